package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// assertNothingLeft checks that no trace of container id remains: state directory, cgroups, mounts
// of its bundle, processes running from its rootfs.
func assertNothingLeft(t testing.TB, r *runtimeBin, id, bundle string) {
	t.Helper()
	if id != "" && !strings.ContainsAny(id, "/") && id != ".." {
		if _, err := os.Lstat(filepath.Join(r.root, id)); err == nil {
			t.Errorf("%s: state directory %s left behind", r.name, filepath.Join(r.root, id))
		}
		// runc's default cgroupsPath is empty, so cgroups are named after the id under the root.
		for _, pattern := range []string{"/sys/fs/cgroup/*/" + id, "/sys/fs/cgroup/" + id, "/sys/fs/cgroup/unified/" + id} {
			matches, _ := filepath.Glob(pattern)
			for _, m := range matches {
				t.Errorf("%s: cgroup %s left behind", r.name, m)
			}
		}
	}
	if bundle != "" {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), bundle) {
				t.Errorf("%s: mount left behind: %s", r.name, sc.Text())
			}
		}
		rootfs := filepath.Join(bundle, "rootfs")
		procs, _ := filepath.Glob("/proc/[0-9]*/root")
		for _, p := range procs {
			if target, err := os.Readlink(p); err == nil && (target == rootfs || strings.HasPrefix(target, rootfs+"/")) {
				cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
				t.Errorf("%s: process %s left running in the container: %q", r.name, filepath.Dir(p), cmd)
			}
		}
	}
}
