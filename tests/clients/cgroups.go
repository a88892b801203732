package clients

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RemoveEmptyCgroupsAtEnd removes, when the test ends, the cgroup rel (relative to each
// hierarchy, such as a containerd namespace "rune-shim-fulldisk") and the cgroups below it that
// the test's containers left empty: runtimes remove a container's own cgroup, not the parents
// its cgroupsPath created. rmdir fails on a cgroup with tasks, so nothing in use goes.
func RemoveEmptyCgroupsAtEnd(t testing.TB, rel string) {
	t.Helper()
	rel = strings.Trim(filepath.Clean("/"+rel), "/")
	if rel == "" || rel == "." {
		t.Fatalf("RemoveEmptyCgroupsAtEnd: %q names no cgroup below the root", rel)
	}
	t.Cleanup(func() {
		roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", rel))
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", rel)); err == nil {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", rel))
		}
		for _, root := range roots {
			// Best effort: a cgroup still in use is the test's own failure to report.
			_ = RemoveCgroupTree(root)
		}
	})
}
