package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// cacheEntry identifies one file of a compilation cache well enough to tell that it was not
// rewritten: wazero writes a new entry to a temp file and renames it, so a rewrite changes the
// inode even when the bytes are the same.
type cacheEntry struct {
	ino   uint64
	mtime int64
	sum   [32]byte
}

func snapshotCache(t *testing.T, dir string) map[string]cacheEntry {
	t.Helper()
	out := map[string]cacheEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = cacheEntry{ino: info.Sys().(*syscall.Stat_t).Ino, mtime: info.ModTime().UnixNano(), sum: sha256.Sum256(b)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameCache(t *testing.T, what string, before, after map[string]cacheEntry) {
	t.Helper()
	if len(before) != len(after) {
		t.Errorf("%s: cache had %d files, now %d", what, len(before), len(after))
	}
	for name, e := range before {
		if after[name] != e {
			t.Errorf("%s: cache file %s was rewritten", what, name)
		}
	}
}

// Small hand-assembled modules keep these tests quick: compiling them takes milliseconds where a
// Go program takes seconds.
func TestCompilationCacheReused(t *testing.T) {
	rootfs := newRootfs(t)
	writeFile(t, filepath.Join(rootfs, "app", "a.wasm"), growModule(1))
	writeFile(t, filepath.Join(rootfs, "app", "b.wasm"), growModule(2))
	cacheDir := filepath.Join(t.TempDir(), "cache")
	start := func(path string) result {
		rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = cacheDir })
		defer rt.Destroy()
		return run(t, rt, enclave.Process{Path: path}, nil)
	}

	if got := start("/app/a.wasm"); got.status != 0 {
		t.Fatalf("first start: %+v", got)
	}
	first := snapshotCache(t, cacheDir)
	if len(first) != 1 {
		t.Fatalf("after the first start the cache holds %d files, want 1 compiled module: %v", len(first), first)
	}
	for name := range first {
		if !strings.HasPrefix(name, "wazero-") {
			t.Errorf("cache file %s is not under wazero's versioned directory", name)
		}
	}
	if got := start("/app/a.wasm"); got.status != 0 {
		t.Fatalf("second start: %+v", got)
	}
	sameCache(t, "second start", first, snapshotCache(t, cacheDir))

	// Another module adds its own entry and leaves the first alone.
	if got := start("/app/b.wasm"); got.status != 0 {
		t.Fatalf("other module: %+v", got)
	}
	third := snapshotCache(t, cacheDir)
	if len(third) != 2 {
		t.Errorf("after a second module the cache holds %d files, want 2", len(third))
	}
	for name, e := range first {
		if third[name] != e {
			t.Errorf("compiling another module rewrote %s", name)
		}
	}
}

func TestPrecompile(t *testing.T) {
	rootfs := newRootfs(t)
	module := growModule(3)
	writeFile(t, filepath.Join(rootfs, "app", "grow.wasm"), module)
	cacheDir := t.TempDir()
	if err := Precompile(context.Background(), cacheDir, module); err != nil {
		t.Fatalf("Precompile: %v", err)
	}
	filled := snapshotCache(t, cacheDir)
	if len(filled) != 1 {
		t.Fatalf("Precompile left %d cache files, want 1", len(filled))
	}
	rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = cacheDir })
	if got := run(t, rt, enclave.Process{Path: "/app/grow.wasm"}, nil); got.status != 0 {
		t.Fatalf("run: %+v", got)
	}
	sameCache(t, "start after Precompile", filled, snapshotCache(t, cacheDir))

	for _, bad := range [][]byte{[]byte("not wasm"), module[:len(module)-1], importModule("env", "f")} {
		if err := Precompile(context.Background(), t.TempDir(), bad); err == nil || !strings.HasPrefix(err.Error(), "invalid wasm module: ") {
			t.Errorf("Precompile of an invalid module: %v", err)
		}
	}
}

// TestReadOnlyCacheInsideRootfs runs the way the container does: the module's entry of the host
// code cache (CacheModule) is bind-mounted read-only inside the rootfs. It needs a private mount
// namespace, so the test re-executes itself in one (Go makes the mounts private there).
func TestReadOnlyCacheInsideRootfs(t *testing.T) {
	if os.Getenv("WASM_TEST_RO_CACHE") == "" {
		rootfs := newRootfs(t)
		writeFile(t, filepath.Join(rootfs, "app", "grow.wasm"), growModule(4))
		writeFile(t, filepath.Join(rootfs, "app", "uncached.wasm"), growModule(5)) // no test compiles it with a cache
		if err := os.Mkdir(filepath.Join(rootfs, ".cache"), 0o755); err != nil {
			t.Fatal(err)
		}
		entry, err := CacheModule(context.Background(), filepath.Join(t.TempDir(), "wasm"), growModule(4), nil)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestReadOnlyCacheInsideRootfs$", "-test.v")
		cmd.Env = append(os.Environ(), "WASM_TEST_RO_CACHE="+rootfs, "WASM_TEST_RO_ENTRY="+entry)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestReadOnlyCacheInsideRootfs") {
			t.Fatalf("in a private mount namespace: %v\n%s", err, out)
		}
		return
	}

	rootfs := os.Getenv("WASM_TEST_RO_CACHE")
	cache := filepath.Join(rootfs, ".cache")
	if err := unix.Mount(os.Getenv("WASM_TEST_RO_ENTRY"), cache, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	if err := unix.Mount("", cache, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	before := snapshotCache(t, cache)
	if c, ro, err := openCache(cache, rootfs); err != nil || c == nil || !ro {
		t.Fatalf("openCache of a verified read-only entry: %v %v %v; want it used, read-only", c, ro, err)
	} else {
		c.Close(context.Background())
	}
	rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = cache })
	if got := run(t, rt, enclave.Process{Path: "/app/grow.wasm"}, nil); got.status != 0 {
		t.Errorf("precompiled module: %+v", got)
	}
	// A module the host did not precompile still runs: it is compiled without the cache.
	if got := run(t, rt, enclave.Process{Path: "/app/uncached.wasm"}, nil); got.status != 0 {
		t.Errorf("module missing from the read-only cache: %+v", got)
	}
	// The guest cannot write to the cache either.
	got := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "write", "/.cache/planted", "x"}}, nil)
	if got.status == 0 || !strings.Contains(strings.ToLower(got.stderr), "read-only file system") {
		t.Errorf("guest write into the cache: %+v", got)
	}
	sameCache(t, "read-only cache", before, snapshotCache(t, cache))
	if len(before) != 2 {
		t.Errorf("the entry holds %d files, want grow's compiled code and the manifest: %v", len(before), before)
	}
}

// poisonEntry rewrites the native code of the wazero cache file in entry with int3 instructions
// and fixes the CRC-32 wazero checks, so that wazero alone would load it and trap in it.
func poisonEntry(t *testing.T, entry string) {
	t.Helper()
	var code string
	for name := range snapshotCache(t, entry) {
		if strings.HasPrefix(name, "wazero-") {
			code = filepath.Join(entry, name)
		}
	}
	b, err := os.ReadFile(code)
	if err != nil {
		t.Fatal(err)
	}
	off := 6
	off += 1 + int(b[off])
	off += 4 + 8*int(binary.LittleEndian.Uint32(b[off:]))
	n := int(binary.LittleEndian.Uint64(b[off:]))
	off += 8
	for i := off; i < off+n; i++ {
		b[i] = 0xcc
	}
	binary.LittleEndian.PutUint32(b[off+n:], crc32.Checksum(b[off:off+n], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(code, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestModifiedCacheEntryNotUsed: code loaded from an entry that no longer matches its manifest
// (damaged on disk, or rewritten after rune prepared it, even after Init) is dropped before it
// runs; the runtime compiles the module itself and stops using the cache. Without the check the
// poisoned code (CRC-32 fixed) would trap this test process.
func TestModifiedCacheEntryNotUsed(t *testing.T) {
	rootfs := newRootfs(t)
	writeFile(t, filepath.Join(rootfs, "app", "grow.wasm"), growModule(6))
	entry, err := CacheModule(context.Background(), filepath.Join(t.TempDir(), "wasm"), growModule(6), nil)
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = entry })
	poisonEntry(t, entry) // after Init: as between rune create and start
	if got := run(t, rt, enclave.Process{Path: "/app/grow.wasm"}, nil); got.status != 0 {
		t.Errorf("module with a poisoned entry: %+v", got)
	}
	if !rt.cacheDistrusted {
		t.Errorf("the runtime still trusts the poisoned entry")
	}
	if got := run(t, rt, enclave.Process{Path: "/app/grow.wasm"}, nil); got.status != 0 {
		t.Errorf("second run: %+v", got)
	}
}

// TestCacheModuleValidates: an invalid module never gets an entry.
func TestCacheModuleValidates(t *testing.T) {
	root := filepath.Join(t.TempDir(), "wasm")
	for _, bad := range [][]byte{[]byte("not wasm"), importModule("env", "f")} {
		if _, err := CacheModule(context.Background(), root, bad, nil); err == nil || !strings.HasPrefix(err.Error(), "invalid wasm module: ") {
			t.Errorf("CacheModule of an invalid module: %v", err)
		}
	}
	es, _ := os.ReadDir(filepath.Join(root, CacheBuildID()))
	if len(es) != 0 {
		t.Errorf("invalid modules left %v", es)
	}
}
