package security

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// The compiled-module cache and what a wasm guest can reach of rune's injected files
// (docs/enclave-containers.md, "Compiled-module cache").

// wcRune is rune with a fresh compiled-module cache and sim platform key of the test's own.
func wcRune(t *testing.T) (*harness.Runtime, string) {
	t.Helper()
	r := harness.Rune(t)
	r.Cleanup(t)
	cache := filepath.Join(t.TempDir(), "cache")
	r.Env = append(r.Env, "RUNE_CACHE_DIR="+cache, "RUNE_SIM_PLATFORM_KEY="+filepath.Join(t.TempDir(), "platform-key.pem"))
	return r, filepath.Join(cache, "wasm")
}

// wcBundle is a busybox bundle whose enclave (sim, builtin:wasm) runs the wasm module at /app/<name>.
func wcBundle(t *testing.T, module []byte, name string, args ...string) (string, *specs.Spec) {
	t.Helper()
	dir, spec := harness.Bundle(t, append([]string{"/app/" + name}, args...)...)
	harness.WriteRootfsFile(t, dir, "app/"+name, module, 0o644)
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm")
	harness.WriteSpec(t, dir, spec)
	return dir, spec
}

func wcModule(t *testing.T, pkg string) []byte {
	t.Helper()
	b, err := os.ReadFile(harness.BuildGo(t, pkg, "wasip1", "wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wcProbe(t *testing.T) []byte { return wcModule(t, "./tests/security/testdata/wasmprobe") }
func wcHello(t *testing.T) []byte { return wcModule(t, "./examples/hello") }
func wcPid(t *testing.T, r *harness.Runtime, id string) int {
	t.Helper()
	pid, ok := r.State(t, id)["pid"].(float64)
	if !ok || pid <= 0 {
		t.Fatalf("%s has no pid", id)
	}
	return int(pid)
}

// wcFiles lists the regular files below dir, relative to it.
func wcFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wcCodeFile is the compiled code file of the host cache entry of module.
func wcCodeFile(t *testing.T, root string, module []byte) string {
	t.Helper()
	entry := wcEntry(root, module)
	for _, f := range wcFiles(t, entry) {
		if strings.HasPrefix(f, "wazero-") {
			return filepath.Join(entry, f)
		}
	}
	t.Fatalf("no compiled code in %s", entry)
	return ""
}

func wcEntry(root string, module []byte) string {
	return filepath.Join(wcBuildDir(root), wcSHA256(module))
}

// wcBuildDir is the one build directory of the cache root (named after init-runelet's build).
func wcBuildDir(root string) string {
	es, _ := os.ReadDir(root)
	if len(es) != 1 {
		return filepath.Join(root, "no single build directory")
	}
	return filepath.Join(root, es[0].Name())
}

// Pod author: a container's runelet used to get the whole host compile cache mounted, so the
// container (and anything that runs in it) saw every other tenant's compiled code and the digests
// of their modules. Now it gets its own module's entry and nothing else, read-only: the other
// module's code is not in the mount, and the mount cannot be written.
func TestWasmCacheHoldsOnlyOwnModule(t *testing.T) {
	r, root := wcRune(t)
	other := wcHello(t)
	dirB, _ := wcBundle(t, other, "other.wasm")
	if res := r.Must(t, "run", "-b", dirB, "wc-other"); !strings.Contains(res.Stdout, "Hello from an enclave container") {
		t.Fatalf("other tenant's container: %+v", res)
	}
	r.Run(t, "delete", "wc-other")
	otherCode := filepath.Base(wcCodeFile(t, root, other))

	probe := wcProbe(t)
	dirA, _ := wcBundle(t, probe, "probe.wasm")
	r.Must(t, "create", "-b", dirA, "wc-own")
	view := filepath.Join("/proc", strconv.Itoa(wcPid(t, r, "wc-own")), "root", "dev", ".rune", "cache")
	got := wcFiles(t, view)
	want := wcFiles(t, wcEntry(root, probe))
	if strings.Join(got, " ") != strings.Join(want, " ") || len(got) != 2 {
		t.Errorf("the container's cache holds %v; want exactly its own entry %v (compiled code and DIGESTS)", got, want)
	}
	for _, f := range got {
		if strings.Contains(f, otherCode) || strings.Contains(f, wcSHA256(other)) {
			t.Errorf("the container sees the other module's compiled code: %s", f)
		}
	}
	if err := os.WriteFile(filepath.Join(view, "planted"), []byte("x"), 0o600); !errors.Is(err, fs.ErrPermission) && !strings.Contains(errString(err), "read-only file system") {
		t.Errorf("write into the container's cache mount: %v, want a read-only file system", err)
	}
	r.Must(t, "delete", "-f", "wc-own")
	harness.AssertNothingLeft(t, r, "wc-own", dirA)
}

func wcSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Pod author: the runelet's directory /dev/.rune lies inside the rootfs the wasm guest sees, and
// the guest used to read the runelet binary, list the cache and stat the agent socket there, and
// open /proc/self/mem of the runelet for writing (a way out of the wasm sandbox). Every path into
// /dev/.rune, including "..", a symlink the guest makes itself, is now absent to the guest ("no
// such file or directory"); the runelet's memory and layout in /proc (mem, maps, environ…) and any
// write to its /proc files are refused ("permission denied"); the rest of the rootfs, and what the
// runelet's process is (/proc/self/status), stay visible.
func TestWasmGuestCannotOpenRuneDir(t *testing.T) {
	r, _ := wcRune(t)
	dir, spec := wcBundle(t, wcProbe(t), "probe.wasm")
	const absent, denied, ok = "no such file or directory", "permission denied", "ok"
	probes := []struct{ arg, want string }{
		{"read=/dev/.rune/ro/init-runelet", absent},
		{"read=/dev/.rune/ro/ld.so", absent},
		{"list=/dev/.rune", absent},
		{"list=/dev/.rune/ro", absent},
		{"list=/dev/.rune/cache", absent},
		{"stat=/dev/.rune/agent.sock", absent},
		{"read=/dev/../dev/.rune/ro/init-runelet", absent},
		{"read=/app/../dev/./.rune/ro/ld.so", absent},
		{"symlink=../dev/.rune:/tmp/r", ok},
		{"read=/tmp/r/ro/init-runelet", absent},
		{"list=/tmp/r/cache", absent},
		{"write=/proc/self/mem", denied},
		{"read=/proc/self/mem", denied},
		{"read=/proc/1/maps", denied},
		{"read=/proc/self/environ", denied},
		{"write=/proc/self/comm", denied},
		{"read=/app/probe.wasm", ok},
		{"list=/dev", ok},
		{"read=/proc/version", ok},
		{"read=/proc/self/status", ok},
	}
	spec.Process.Args = []string{"/app/probe.wasm"}
	for _, p := range probes {
		spec.Process.Args = append(spec.Process.Args, p.arg)
	}
	harness.WriteSpec(t, dir, spec)
	res := r.Must(t, "run", "-b", dir, "wc-probe")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != len(probes) {
		t.Fatalf("probe output:\n%s", res.Stdout)
	}
	for i, p := range probes {
		op, path, _ := strings.Cut(p.arg, "=")
		line := lines[i]
		if !strings.HasPrefix(line, op+" "+path+": ") {
			t.Fatalf("probe output out of order: %s", line)
		}
		switch p.want {
		case ok:
			if !strings.Contains(line, ": ok") {
				t.Errorf("guest: %s; want it allowed", line)
			}
		default:
			if !strings.Contains(line, ": error ") || !strings.Contains(strings.ToLower(line), p.want) {
				t.Errorf("guest: %s; want %s", line, p.want)
			}
		}
		if p.arg == "list=/dev" && strings.Contains(line, ".rune") {
			t.Errorf("guest's listing of /dev shows rune's directory: %s", line)
		}
	}
	r.Run(t, "delete", "wc-probe")
	harness.AssertNothingLeft(t, r, "wc-probe", dir)
}

// wcPoison rewrites the native code of a wazero cache file with int3 instructions and fixes the
// CRC-32 wazero checks, as an attacker who can write the cache would: wazero alone would load it
// and run the traps.
func wcPoison(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("WAZEVO")) {
		t.Fatalf("%s is not a wazero cache file", path)
	}
	off := 6
	off += 1 + int(b[off])
	nfuncs := int(binary.LittleEndian.Uint32(b[off:]))
	off += 4 + 8*nfuncs
	n := int(binary.LittleEndian.Uint64(b[off:]))
	off += 8
	code := b[off : off+n]
	for i := range code {
		code[i] = 0xcc
	}
	binary.LittleEndian.PutUint32(b[off+n:], crc32.Checksum(code, crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// Node-side tampering or damage: the host cache holds native code the runelet executes, and
// wazero checks only a CRC-32 of it. An entry whose code was rewritten (CRC fixed) used to be
// loaded and run. Now its SHA-256 no longer matches the entry's DIGESTS: at create the host
// rebuilds the entry; after create (rewritten under a created container) the runelet does not
// load it and compiles the module itself. Either way the workload runs its own code.
func TestWasmCachePoisonedEntryNotExecuted(t *testing.T) {
	r, root := wcRune(t)
	probe := wcProbe(t)
	dir, spec := wcBundle(t, probe, "probe.wasm")
	ran := func(marker string) bool {
		_, err := os.Stat(filepath.Join(dir, "rootfs", "tmp", marker))
		return err == nil
	}
	runs := func(marker string) {
		spec.Process.Args = []string{"/app/probe.wasm", "create=/tmp/" + marker}
		harness.WriteSpec(t, dir, spec)
	}
	runs("fill")
	r.Must(t, "run", "-b", dir, "wc-fill")
	r.Run(t, "delete", "wc-fill")
	code := wcCodeFile(t, root, probe)

	// Rewritten before create: the host notices and rebuilds the entry.
	poisoned := wcPoison(t, code)
	runs("before")
	if res := r.Run(t, "run", "-b", dir, "wc-before"); res.Code != 0 || !ran("before") {
		t.Errorf("run with a poisoned entry: %+v", res)
	}
	r.Run(t, "delete", "wc-before")
	if b, _ := os.ReadFile(wcCodeFile(t, root, probe)); bytes.Equal(b, poisoned) {
		t.Errorf("the poisoned entry was kept")
	}

	// Rewritten between create and start: the runelet notices and compiles the module itself.
	runs("after")
	r.Must(t, "create", "-b", dir, "wc-after")
	wcPoison(t, wcCodeFile(t, root, probe))
	r.Must(t, "start", "wc-after")
	r.WaitStatus(t, "wc-after", "stopped")
	if !ran("after") {
		t.Errorf("the workload did not run after its cache entry was poisoned under it")
	}
	r.Must(t, "delete", "wc-after")
	harness.AssertNothingLeft(t, r, "wc-after", dir)
}

// The entry is what the runelet runs from: once a container is created, starting it opens the
// compiled code through the mount (seen by inotify on the host's file: the same inode) instead of
// compiling the module again, whether the container's user is root (without CAP_DAC_OVERRIDE, as
// runc's default capabilities have it) or another user.
func TestWasmCacheEntryUsedAtStart(t *testing.T) {
	for _, uid := range []uint32{0, 65534} {
		t.Run("uid"+strconv.Itoa(int(uid)), func(t *testing.T) {
			r, root := wcRune(t)
			probe := wcProbe(t)
			dir, spec := wcBundle(t, probe, "probe.wasm", "create=/tmp/ran")
			spec.Process.User.UID, spec.Process.User.GID = uid, uid
			harness.WriteSpec(t, dir, spec)
			os.Chmod(filepath.Join(dir, "rootfs", "tmp"), 0o1777)
			r.Must(t, "create", "-b", dir, "wc-used")
			fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if _, err := unix.InotifyAddWatch(fd, wcCodeFile(t, root, probe), unix.IN_OPEN); err != nil {
				t.Fatal(err)
			}
			r.Must(t, "start", "wc-used")
			r.WaitStatus(t, "wc-used", "stopped")
			if _, err := os.Stat(filepath.Join(dir, "rootfs", "tmp", "ran")); err != nil {
				t.Errorf("the workload did not run: %v", err)
			}
			buf := make([]byte, 4096)
			if n, err := unix.Read(fd, buf); n <= 0 {
				t.Errorf("start did not open the compiled code in the cache entry (%v): it compiled the module again", err)
			}
			r.Must(t, "delete", "wc-used")
			harness.AssertNothingLeft(t, r, "wc-used", dir)
		})
	}
}

// Concurrent creates of one module with an empty cache: every create succeeds, one entry results
// (the first writer's), no temporary directory is left, and every container runs.
func TestWasmCacheConcurrentCreates(t *testing.T) {
	r, root := wcRune(t)
	hello := wcHello(t)
	const n = 4
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i], _ = wcBundle(t, hello, "hello.wasm")
	}
	var wg sync.WaitGroup
	results := make([]harness.Result, n)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.Run(t, "create", "-b", dirs[i], "wc-conc-"+strconv.Itoa(i))
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.Code != 0 {
			t.Errorf("create %d: %+v", i, res)
		}
	}
	es, err := os.ReadDir(wcBuildDir(root))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Name() != wcSHA256(hello) {
		t.Errorf("cache holds %v; want exactly the module's entry", es)
	}
	for i := range dirs {
		id := "wc-conc-" + strconv.Itoa(i)
		r.Must(t, "start", id)
		r.WaitStatus(t, id, "stopped")
		r.Must(t, "delete", id)
		harness.AssertNothingLeft(t, r, id, dirs[i])
	}
}

// Anyone who could write into the cache directory: a symlink planted where the build's directory
// belongs, pointing elsewhere on the host, is not written through; it is replaced by a directory.
func TestWasmCachePlantedSymlinkNotFollowed(t *testing.T) {
	r, root := wcRune(t)
	dir, _ := wcBundle(t, wcHello(t), "hello.wasm")
	r.Must(t, "run", "-b", dir, "wc-fill")
	r.Run(t, "delete", "wc-fill")
	build := wcBuildDir(root)
	if err := os.RemoveAll(build); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, build); err != nil {
		t.Fatal(err)
	}
	r.Must(t, "run", "-b", dir, "wc-link")
	r.Run(t, "delete", "wc-link")
	if es, _ := os.ReadDir(elsewhere); len(es) != 0 {
		t.Errorf("rune wrote through the planted symlink: %v", es)
	}
	if fi, err := os.Lstat(build); err != nil || !fi.IsDir() {
		t.Errorf("build directory: %v %v; want a real directory", fi, err)
	}
	harness.AssertNothingLeft(t, r, "wc-link", dir)
}
