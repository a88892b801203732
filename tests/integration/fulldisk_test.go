package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFullDisk: with rune's state on a full file system, create fails with the reason and leaves
// nothing behind (no cgroup, no process, no half-written state), for ordinary and enclave containers.
func TestFullDisk(t *testing.T) {
	r := rune(t)
	simPlatform(t, r)
	full := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(full, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", full, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(full, unix.MNT_DETACH) })
	r.root = filepath.Join(full, "state")
	// With no room at all the state directory cannot be made; with a few pages it can, and a later
	// write (state.json, the runelet socket, enclave.json) fails instead.
	for _, free := range []int{0, 4096, 8192, 12288} {
		fill(t, full, free)
		for _, tc := range []struct {
			id  string
			env []string
		}{{"full-plain", nil}, {"full-enclave", simWasm()}} {
			dir, _ := enclaveBundle(t, tc.env, "/app/prog.wasm", "exit", "0")
			if tc.env == nil {
				dir, _ = bundle(t, "true")
			}
			res := r.run(t, "create", "-b", dir, tc.id)
			t.Logf("%s, %d bytes free: exit %d %s", tc.id, free, res.code, lastLine(res.stderr))
			if res.code == 0 {
				// It fitted: then it must work and clean up like any container.
				r.run(t, "delete", "-f", tc.id)
			} else if !strings.Contains(res.stderr, "no space left on device") {
				t.Errorf("%s, %d bytes free: create: %d %q", tc.id, free, res.code, res.stderr)
			}
			assertNothingLeft(t, r, tc.id, dir)
		}
	}
}

// fill leaves about free bytes unused on the file system at dir.
func fill(t *testing.T, dir string, free int) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	os.Remove(path)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	if free > 0 {
		fi, _ := f.Stat()
		if err := f.Truncate(fi.Size() - int64(free)); err != nil {
			t.Fatal(err)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
