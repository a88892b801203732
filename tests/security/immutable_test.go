package security

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// attackScript tries to make every file under /dev/.rune writable and to change it, then to unmount
// what is mounted there. It writes one line per attempt ("WHAT PATH: ok" or "WHAT PATH: failed:
// MESSAGE") to $1 ("-": stdout). Its writes are harmless wherever they succeed: a file's first byte
// is written back with its own value, a file is truncated to its own size; the attack needs only
// to show that it could write.
const attackScript = `
[ "$1" = - ] || exec >"$1" 2>&1
try() { what=$1; shift; if out=$("$@" 2>&1); then echo "$what: ok"; else echo "$what: failed: $out"; fi; }
files=$(busybox find /dev/.rune -type f | busybox sort)
echo "files: $(echo $files)"
for m in /dev/.rune/ro /dev/.rune/cache $files; do
	try "remount-rw $m" busybox mount -o remount,rw "$m"
	try "remount-rw-bind $m" busybox mount -o remount,rw,bind "$m"
done
for f in $files; do
	try "write $f" busybox sh -c "busybox dd if=$f bs=1 count=1 2>/dev/null | busybox dd of=$f bs=1 count=1 conv=notrunc 2>&1 >/dev/null"
	try "truncate $f" busybox truncate -s "$(busybox stat -c %s "$f")" "$f"
done
for m in /dev/.rune/cache /dev/.rune/ro $files; do try "umount $m" busybox umount "$m"; done
echo "attack done"
`

// withSysAdmin gives the container's process CAP_SYS_ADMIN in every capability set (bounding,
// effective, permitted, inheritable, ambient) and no seccomp filter: the strongest process a pod
// author can ask for short of a user namespace mapping to host root.
func withSysAdmin(spec *specs.Spec) {
	c := spec.Process.Capabilities
	all := append(slices.Clone(c.Bounding), "CAP_SYS_ADMIN")
	c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient = all, all, all, all, all
	spec.Linux.Seccomp = nil
}

// hashFiles returns the SHA-256 of each file in paths.
func hashFiles(t *testing.T, paths []string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		sums[p] = hex.EncodeToString(sum[:])
	}
	return sums
}

// filesUnder lists the regular files under each of dirs.
func filesUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				out = append(out, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// overlayLayers reads the lower layers of the overlayfs mounts that PID pid sees under /dev/.rune,
// and fails the test if anything mounted there is neither that nor the tmpfs holding them: no host
// file may enter the container as a bind mount.
func overlayLayers(t *testing.T, pid int) []string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var layers []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || !strings.HasPrefix(fields[4], "/dev/.rune") {
			continue
		}
		i := slices.Index(fields, "-")
		fstype, opts := fields[i+1], fields[i+3]
		switch {
		case fields[4] == "/dev/.rune" && fstype == "tmpfs":
		case fstype == "overlay":
			for _, o := range strings.Split(opts, ",") {
				if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
					layers = append(layers, strings.Split(v, ":")...)
				}
			}
			if strings.Contains(opts, "upperdir=") {
				t.Errorf("%s is a writable overlay: %s", fields[4], sc.Text())
			}
		default:
			t.Errorf("%s is a %s mount, not a read-only overlay: %s", fields[4], fstype, sc.Text())
		}
	}
	if len(layers) == 0 {
		t.Errorf("no overlay under /dev/.rune in /proc/%d/mountinfo", pid)
	}
	return layers
}

// checkAttack checks the attack script's report: each file of want was attacked, every write and
// truncation of a file under the read-only directories failed with EROFS, and so did remounting
// each read-only directory's file system read-write.
func checkAttack(t *testing.T, report string, roDirs []string, want []string) {
	t.Helper()
	if !strings.Contains(report, "attack done") {
		t.Fatalf("the attack did not run to its end:\n%s", report)
	}
	lines := strings.Split(report, "\n")
	files := strings.Fields(strings.TrimPrefix(lines[0], "files: "))
	for _, w := range want {
		if !slices.Contains(files, w) {
			t.Errorf("%s not in the container (files: %q)", w, files)
		}
	}
	result := func(what string) string {
		for _, l := range lines {
			if r, ok := strings.CutPrefix(l, what+": "); ok {
				return r
			}
		}
		return "no result"
	}
	for _, d := range roDirs {
		if r := result("remount-rw " + d); !strings.Contains(r, "Read-only file system") {
			t.Errorf("remount-rw %s: %s; want EROFS", d, r)
		}
	}
	attacked := 0
	for _, f := range files {
		if !slices.ContainsFunc(roDirs, func(d string) bool { return strings.HasPrefix(f, d+"/") }) {
			continue
		}
		attacked++
		for _, what := range []string{"write", "truncate"} {
			if r := result(what + " " + f); !strings.HasPrefix(r, "failed:") || !strings.Contains(r, "Read-only file system") {
				t.Errorf("%s %s: %s; want EROFS", what, f, r)
			}
		}
	}
	if attacked == 0 {
		t.Errorf("no file attacked:\n%s", report)
	}
	if t.Failed() {
		t.Logf("attack report:\n%s", report)
	}
}

func statePid(t *testing.T, r *harness.Runtime, id string) int {
	t.Helper()
	pid, ok := r.State(t, id)["pid"].(float64)
	if !ok || pid <= 0 {
		t.Fatalf("%s has no pid", id)
	}
	return int(pid)
}

// TestInjectedFilesImmutable — party: pod author, whose container has CAP_SYS_ADMIN in every
// capability set and no seccomp filter. Attack (as on runc, CVE-2019-5736): remount read-write what
// the host injected into the container (the runelet, the dynamic loader, libc, the PAL), write or
// truncate those files, unmount them. Before the fix they were bind mounts of the host's own files,
// read-only per mount only: `mount -o remount,rw,bind` made them writable, and the next `init-runelet
// prepare` or container ran the container's code as root on the host. Expected: the files are
// private copies under a lower-only overlayfs, whose file system refuses to become writable, so
// every write and truncation fails with EROFS; the host's files and the copies are byte-identical
// afterwards.
func TestInjectedFilesImmutable(t *testing.T) {
	r := harness.Rune(t)
	r.Cleanup(t)
	harness.SimEnclave(t, r)
	dir := harness.PALDir(t, r)
	pal := harness.InstallPAL(t, dir, "libpal.so", paltest.Options{Version: 3})

	bundle, spec := harness.Bundle(t, "sh", "-c", attackScript, "sh", "/tmp/report")
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+pal)
	withSysAdmin(spec)
	harness.WriteSpec(t, bundle, spec)

	var runelet string
	for _, kv := range r.Env {
		if v, ok := strings.CutPrefix(kv, "RUNE_RUNELET="); ok {
			runelet = v
		}
	}
	c, err := enclavehost.ResolveClosure(nil, runelet, pal)
	if err != nil {
		t.Fatal(err)
	}
	host := []string{runelet, pal, c.Interpreter}
	for _, l := range c.Libraries {
		host = append(host, l)
	}

	const id = "immutable"
	r.Must(t, "create", "-b", bundle, id)
	copies := filesUnder(t, overlayLayers(t, statePid(t, r, id))...)
	before := hashFiles(t, append(host, copies...))
	r.Must(t, "start", id)
	r.WaitStatus(t, id, "stopped")
	report, err := os.ReadFile(filepath.Join(bundle, "rootfs", "tmp", "report"))
	if err != nil {
		t.Fatal(err)
	}
	checkAttack(t, string(report), []string{"/dev/.rune/ro"}, []string{
		"/dev/.rune/ro/ld.so", "/dev/.rune/ro/init-runelet", "/dev/.rune/ro/lib/libc.so.6", "/dev/.rune/ro/pal/libpal.so"})
	if after := hashFiles(t, append(host, copies...)); !mapsEqual(before, after) {
		t.Errorf("host files changed:\nbefore %v\nafter  %v", before, after)
	}
	r.Must(t, "delete", id)
	harness.AssertNothingLeft(t, r, id, bundle)
}

// TestWasmCacheImmutable — the compiled-module cache that rune prepares on the host and gives a
// builtin:wasm container at /dev/.rune/cache holds native code the runelet executes. A wasm
// workload makes no system calls of its own, so the attacker here is the strongest process that
// can see that mount: one in the container's mount namespace as host root with every capability
// (nsenter). Attack: remount the cache read-write, write and truncate its files, unmount it.
// Expected: EROFS for every write and truncation, and the host's cache byte-identical afterwards.
func TestWasmCacheImmutable(t *testing.T) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("nsenter (util-linux) is required: %v", err)
	}
	r := harness.Rune(t)
	r.Cleanup(t)
	harness.SimEnclave(t, r)
	var cache string
	for _, kv := range r.Env {
		if v, ok := strings.CutPrefix(kv, "RUNE_CACHE_DIR="); ok {
			cache = v
		}
	}
	bundle, spec := harness.Bundle(t, "/app/prog.wasm", "sleep")
	prog, err := os.ReadFile(harness.BuildGo(t, "./tests/integration/testdata/enclaveprog", "wasip1", "wasm"))
	if err != nil {
		t.Fatal(err)
	}
	harness.WriteRootfsFile(t, bundle, "app/prog.wasm", prog, 0o644)
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm")
	harness.WriteSpec(t, bundle, spec)

	const id = "wasm-cache"
	r.Must(t, "create", "-b", bundle, id)
	pid := statePid(t, r, id)
	overlayLayers(t, pid)
	hostCache := filesUnder(t, cache)
	if len(hostCache) == 0 {
		t.Fatalf("rune left no compiled module in %s", cache)
	}
	before := hashFiles(t, hostCache)
	out, err := exec.Command(nsenter, "--target", strconv.Itoa(pid), "--mount", "--pid", "--", "/bin/busybox", "sh", "-c", attackScript, "sh", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	checkAttack(t, string(out), []string{"/dev/.rune/cache", "/dev/.rune/ro"}, []string{"/dev/.rune/ro/init-runelet"})
	if !strings.Contains(string(out), "/dev/.rune/cache/") {
		t.Errorf("no cache file in the container:\n%s", out)
	}
	if after := hashFiles(t, hostCache); !mapsEqual(before, after) {
		t.Errorf("host cache changed:\nbefore %v\nafter  %v", before, after)
	}
	r.Must(t, "delete", "-f", id)
	harness.AssertNothingLeft(t, r, id, bundle)
}

// TestOrdinaryContainerUnaffected: an ordinary container with the same privileges gets exactly the
// mounts runc gives it, and no /dev/.rune.
func TestOrdinaryContainerUnaffected(t *testing.T) {
	mounts := map[string][]string{}
	for _, r := range []*harness.Runtime{harness.Rune(t), harness.Runc(t)} {
		r.Cleanup(t)
		bundle, spec := harness.Bundle(t, "sh", "-c", "busybox cut -d' ' -f5 /proc/self/mountinfo; ls /dev/.rune 2>&1")
		withSysAdmin(spec)
		harness.WriteSpec(t, bundle, spec)
		res := r.Run(t, "run", "-b", bundle, "ordinary")
		if res.Code != 1 || !strings.Contains(res.Stdout, "/dev/.rune: No such file or directory") {
			t.Errorf("%s: exit %d\n%s%s", r.Name, res.Code, res.Stdout, res.Stderr)
		}
		m := strings.Fields(res.Stdout)
		sort.Strings(m)
		mounts[r.Name] = m
		harness.AssertNothingLeft(t, r, "ordinary", bundle)
	}
	if !slices.Equal(mounts["rune"], mounts["runc"]) {
		t.Errorf("rune mounts %q\nrunc mounts %q", mounts["rune"], mounts["runc"])
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
