package k8s

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// TestNodeRecoversFromKilledHarness leaves the node as a harness killed in the middle of a
// cluster would (its record of the node, the CNI bridge, a pod cgroup with a process in it, a
// process and a mount in its cluster directory, a sysctl the kubelet changed, a file in a host
// directory), drops the lock as the kernel does when that process dies, and checks that the
// next harness refuses to start while the lock is held and puts all of it back once it is not.
func TestNodeRecoversFromKilledHarness(t *testing.T) {
	if os.Geteuid() != 0 {
		clients.Unavailable(t, "the Kubernetes tests need root (uid %d)", os.Geteuid())
	}
	killed, _, err := lockNode()
	if err != nil {
		t.Fatal(err)
	}
	host, err := saveHostState()
	if err != nil {
		killed.release(false)
		t.Fatal(err)
	}
	if err := killed.record(host); err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, the node is put back.
	t.Cleanup(func() {
		killed.f.Close()
		if l, _, err := lockNode(); err == nil {
			l.release(false)
		}
	})

	if err := createCgroupRoot(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "link", "add", bridgeName, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	const sysctl = "kernel.keys.root_maxkeys"
	was := host.sysctls[sysctl]
	n, _ := strconv.Atoi(was)
	if err := os.WriteFile(sysctlPath(sysctl), []byte(strconv.Itoa(n+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/var/lib/cni", 0o755); err != nil {
		t.Fatal(err)
	}
	strayFile := "/var/lib/cni/inclavare-k8s-recovery-test"
	if err := os.WriteFile(strayFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	clusterDir, err := os.MkdirTemp("", "rune-k8s-")
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(clusterDir, "kubelet", "root")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	// A component started from the cluster directory, and a pod's process in its cgroup.
	component := exec.Command("sh", "-c", "while :; do sleep 1; done", filepath.Join(clusterDir, "bin", "kubelet"))
	pod := exec.Command("sleep", "600")
	for _, c := range []*exec.Cmd{component, pod} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, hier := range cgroupHierarchies() {
		podCg := filepath.Join(hier, CgroupRoot, "kubepods", "pod1")
		for _, d := range []string{filepath.Dir(podCg), podCg} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			// A v1 cpuset takes tasks only once it has CPUs and memory nodes.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(hier, f)); err == nil {
					if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := os.WriteFile(filepath.Join(podCg, "cgroup.procs"), []byte(strconv.Itoa(pod.Process.Pid)), 0o644); err != nil {
			t.Fatalf("move the pod's process into %s: %v", podCg, err)
		}
	}

	if _, _, err := lockNode(); err == nil || !strings.Contains(err.Error(), "another cluster of this harness is running") {
		t.Fatalf("a second harness while the first holds the lock: got %v, want a refusal", err)
	}
	// The harness dies: the kernel drops its lock, its record stays.
	killed.f.Close()

	next, recovered, err := lockNode()
	if err != nil {
		t.Fatalf("the next harness: %v", err)
	}
	t.Logf("recovered:\n  %s", strings.Join(recovered, "\n  "))
	for _, c := range []*exec.Cmd{component, pod} {
		if err := c.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("%s: %v, want killed", c, err)
		}
	}
	if left := host.leftovers(); len(left) > 0 {
		t.Errorf("left on the node after recovery:\n  %s", strings.Join(left, "\n  "))
	}
	if _, err := os.Stat(clusterDir); err == nil {
		t.Errorf("the killed harness's cluster directory %s is still there", clusterDir)
	}
	if m := mountsBelow(clusterDir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	joined := strings.Join(recovered, "\n")
	for _, want := range []string{"killed processes", "removed cluster directory " + clusterDir, "restored the host state"} {
		if !strings.Contains(joined, want) {
			t.Errorf("recovered does not say %q", want)
		}
	}
	if err := next.release(false); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(lockPath); err != nil || len(b) != 0 {
		t.Errorf("%s after a clean release: %q, %v; want empty", lockPath, b, err)
	}
}
