package harness

import (
	"os"
	"path/filepath"
	"sort"
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
			var dirs []string
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				_ = os.Remove(d)
			}
		}
	})
}
