package k8s

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// The node state the harness creates or the kubelet changes outside the cluster's own
// directory, saved before the cluster starts and put back by restore.
const (
	// CgroupRoot is the kubelet's cgroupRoot: kubepods and every pod cgroup live below it in
	// each hierarchy, so teardown can tell its cgroups from the host's.
	CgroupRoot = "inclavare-k8s-tests"
	// bridgeName is the CNI bridge of the node's pod network (198.18.0.0/24).
	bridgeName = "inclk8s0"
	// podSubnet is the pod network's subnet, reserved for tests (RFC 2544, 198.18.0.0/15).
	podSubnet = "198.18.0.0/24"
	// serviceSubnet holds the cluster's service addresses; no traffic ever goes there.
	serviceSubnet = "198.18.1.0/24"
	// devicePluginDir is the kubelet's device-plugin directory; the kubelet uses this path
	// whatever its --root-dir, and so does deploy/device-plugin.yaml.
	devicePluginDir = "/var/lib/kubelet/device-plugins"
)

// kubeletSysctls are the kernel settings the kubelet sets at start (vm.overcommit_memory,
// kernel.panic, kernel.panic_on_oops; the keys when it protects kernel defaults).
var kubeletSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
}

// hostPaths are node directories the cluster writes outside its own: the kubelet's
// device-plugin sockets and checkpoint, pod logs and their links (whatever its --root-dir);
// containerd's network namespaces and CNI's result cache for pods on the pod network (the
// device plugin's); /run/aesmd, which deploy/device-plugin.yaml's hostPath volume creates on
// nodes without SGX.
var hostPaths = []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/run/netns", "/var/lib/cni", "/run/aesmd"}

// hostState is what the node looked like before the cluster.
type hostState struct {
	sysctls map[string]string
	// entries lists, per directory of hostPaths that existed, every path below it; a
	// directory that did not exist is absent from the map.
	entries map[string][]string
}

func saveHostState() (*hostState, error) {
	h := &hostState{sysctls: map[string]string{}, entries: map[string][]string{}}
	for _, name := range kubeletSysctls {
		v, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", name, err)
		}
		h.sysctls[name] = strings.TrimSpace(string(v))
	}
	for _, dir := range hostPaths {
		list, err := listTree(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		h.entries[dir] = list
	}
	if bridgeExists() {
		return nil, fmt.Errorf("network interface %s exists already: another cluster of this harness is running, or one leaked", bridgeName)
	}
	if roots := existingCgroupRoots(); len(roots) > 0 {
		return nil, fmt.Errorf("cgroup %s exists already: another cluster of this harness is running, or one leaked", roots[0])
	}
	return h, nil
}

// restore puts the node back: sysctls, host directories (only what was not there before),
// the cgroups below CgroupRoot, the CNI bridge. Each problem is reported; the rest still runs.
func (h *hostState) restore() error {
	var errs []error
	for _, name := range kubeletSysctls {
		want := h.sysctls[name]
		got, err := os.ReadFile(sysctlPath(name))
		if err == nil && strings.TrimSpace(string(got)) == want {
			continue
		}
		if err := os.WriteFile(sysctlPath(name), []byte(want), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", name, want, err))
		}
	}
	for _, dir := range hostPaths {
		if err := unmountBelow(dir); err != nil {
			errs = append(errs, err)
		}
		before, existed := h.entries[dir]
		if !existed {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s, which the cluster created: %w", dir, err))
			}
			continue
		}
		now, err := listTree(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Deepest first, so a new directory is empty by the time it is removed.
		slices.Reverse(now)
		for _, p := range now {
			if _, ok := slices.BinarySearch(before, p); ok {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove %s, which the cluster created: %w", p, err))
			}
		}
	}
	if err := removeCgroupRoot(); err != nil {
		errs = append(errs, err)
	}
	if _, err := deleteBridge(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// leftovers names what restore should have removed and did not: it must find nothing.
func (h *hostState) leftovers() []string {
	var left []string
	for _, name := range kubeletSysctls {
		got, err := os.ReadFile(sysctlPath(name))
		if err != nil || strings.TrimSpace(string(got)) != h.sysctls[name] {
			left = append(left, fmt.Sprintf("sysctl %s = %q, was %q", name, strings.TrimSpace(string(got)), h.sysctls[name]))
		}
	}
	for _, dir := range hostPaths {
		before, existed := h.entries[dir]
		now, err := listTree(dir)
		if errors.Is(err, fs.ErrNotExist) {
			if existed {
				left = append(left, dir+" was removed")
			}
			continue
		}
		if !existed {
			left = append(left, dir+" (created)")
			continue
		}
		for _, p := range now {
			if _, ok := slices.BinarySearch(before, p); !ok {
				left = append(left, p)
			}
		}
	}
	for _, root := range existingCgroupRoots() {
		left = append(left, "cgroup "+root)
	}
	if bridgeExists() {
		left = append(left, "network interface "+bridgeName)
	}
	return left
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// listTree lists every path below dir, sorted.
func listTree(dir string) ([]string, error) {
	var list []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			list = append(list, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	sort.Strings(list)
	return list, nil
}

func bridgeExists() bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", bridgeName))
	return err == nil
}

// deleteBridge deletes the CNI bridge if it exists, and says whether it did.
func deleteBridge() (bool, error) {
	if !bridgeExists() {
		return false, nil
	}
	if out, err := exec.Command("ip", "link", "delete", bridgeName).CombinedOutput(); err != nil {
		return false, fmt.Errorf("ip link delete %s: %w: %s", bridgeName, err, out)
	}
	return true, nil
}

// existingCgroupRoots lists CgroupRoot in every hierarchy that has it.
func existingCgroupRoots() []string {
	var roots []string
	for _, hier := range cgroupHierarchies() {
		if root := filepath.Join(hier, CgroupRoot); fileExists(root) {
			roots = append(roots, root)
		}
	}
	return roots
}

// cgroupHierarchies are the mounted cgroup hierarchies: /sys/fs/cgroup itself on a pure
// cgroup v2 host, else its subdirectories (v1 controllers and, in hybrid mode, unified).
func cgroupHierarchies() []string {
	var st syscall.Statfs_t
	if syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 { // CGROUP2_SUPER_MAGIC
		return []string{"/sys/fs/cgroup"}
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return dirs
}

// createCgroupRoot creates CgroupRoot in every hierarchy (the kubelet refuses a CgroupRoot that
// does not exist) and gives its cpuset the machine's CPUs and memory nodes, which a v1 child
// cpuset must have before tasks can join below it.
func createCgroupRoot() error {
	for _, hier := range cgroupHierarchies() {
		dir := filepath.Join(hier, CgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(hier, f))
			if err != nil {
				continue // not the v1 cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
				return fmt.Errorf("set %s of %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// removeCgroupRoot removes CgroupRoot and every cgroup below it, deepest first. rmdir fails on
// a cgroup that still has tasks, so nothing in use is removed: the error names it.
func removeCgroupRoot() error {
	var errs []error
	for _, hier := range cgroupHierarchies() {
		errs = append(errs, clients.RemoveCgroupTree(filepath.Join(hier, CgroupRoot)))
	}
	return errors.Join(errs...)
}

// unmountBelow lazily unmounts every mount point at or below dir, deepest first.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeOctal(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// mountsBelow lists the mount points at or below dir.
func mountsBelow(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 {
			if mp := unescapeOctal(f[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
				points = append(points, mp)
			}
		}
	}
	return points
}

// unescapeOctal undoes mountinfo's \ooo escapes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
