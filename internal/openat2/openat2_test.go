package openat2

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenConfined: the caller's resolve flags hold (a symlink out of the directory is refused
// under RESOLVE_BENEATH, resolved inside it under RESOLVE_IN_ROOT), and errors come back as the
// kernel gave them.
func TestOpenConfined(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/f", filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	if _, err := Open(dir, "abs", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH}); err != unix.EXDEV {
		t.Fatalf("absolute symlink under RESOLVE_BENEATH: %v, want EXDEV", err)
	}
	fd, err := Open(dir, "abs", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		t.Fatalf("absolute symlink under RESOLVE_IN_ROOT: %v", err)
	}
	var st1, st2 unix.Stat_t
	unix.Fstat(fd, &st1)
	unix.Close(fd)
	unix.Stat(filepath.Join(root, "f"), &st2)
	if st1.Ino != st2.Ino {
		t.Fatalf("RESOLVE_IN_ROOT opened another file")
	}
	if _, err := Open(dir, "missing", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC}); err != unix.ENOENT {
		t.Fatalf("missing file: %v, want ENOENT", err)
	}
}
