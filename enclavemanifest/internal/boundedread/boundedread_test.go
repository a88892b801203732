package boundedread

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("hello"), 0o600)
	exact := filepath.Join(dir, "exact")
	os.WriteFile(exact, []byte(strings.Repeat("y", 10)), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, []byte(strings.Repeat("x", 11)), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(small, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		read func(string, int64) ([]byte, error)
		path string
		want string
		err  string
	}{
		{"regular", File, small, "hello", ""},
		{"at the limit", File, exact, "yyyyyyyyyy", ""},
		{"over the limit", File, big, "", "more than the 10 bytes"},
		{"symlink followed", File, link, "hello", ""},
		{"symlink refused", FileNoFollow, link, "", "too many levels of symbolic links"},
		{"FIFO refused without blocking", File, fifo, "", "not a regular file"},
		{"directory", File, dir, "", "not a regular file"},
		{"missing", File, filepath.Join(dir, "none"), "", "no such file"},
		{"device", File, "/dev/zero", "", "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.read(tc.path, 10)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}
