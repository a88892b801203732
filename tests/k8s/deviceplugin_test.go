package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

const (
	resourceSim    = "inclavare.io/sim"
	systemNS       = "inclavare-system"
	pluginSelector = "app.kubernetes.io/name=rune-device-plugin"
)

// applyShippedNamespace applies the Namespace of deploy/rune-deploy.yaml, as shipped, without
// the installer (which testInstaller applies).
func applyShippedNamespace(e *env) {
	for _, d := range manifestDocs(e.t, repoFile(e.t, "deploy/rune-deploy.yaml")) {
		if d.Kind == "Namespace" {
			e.apply(d.Raw)
			return
		}
	}
	e.t.Fatal("deploy/rune-deploy.yaml has no Namespace")
}

// checkImages fails unless every image the manifest names is one the harness imported: a
// missing one would be pulled from a registry, and no test sends traffic off the machine.
func checkImages(e *env, manifest []byte) {
	imported := map[string]bool{PauseImage: true, WorkloadImage: true, NodeImage: true, HelloWasmImage: true}
	for _, line := range strings.Split(string(manifest), "\n") {
		if img, ok := strings.CutPrefix(strings.TrimSpace(line), "image:"); ok {
			if img = strings.Trim(strings.TrimSpace(img), `"'`); !imported[img] {
				e.t.Fatalf("the manifest names image %s, which the harness does not build (it builds %v)", img, imported)
			}
		}
	}
}

// daemonSetPod waits until the DaemonSet's pod on the node is running and ready, and returns it.
func (e *env) daemonSetPod(ns, selector string) *corev1.Pod {
	e.t.Helper()
	var name string
	err := clients.WaitFor(2*time.Minute, "a pod of "+selector, func() (bool, error) {
		out, err := e.kubectlOK("-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}")
		if f := strings.Fields(out); len(f) == 1 {
			name = f[0]
			return true, nil
		}
		return false, fmt.Errorf("pods %q: %v", out, err)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.waitRunning(ns, name)
}

// nodeResource is the node's capacity and allocatable count of a resource.
func (e *env) nodeResource(name string) (capacity, allocatable int64) {
	e.t.Helper()
	n, err := e.Node()
	if err != nil {
		e.t.Fatal(err)
	}
	c, a := n.Status.Capacity[corev1.ResourceName(name)], n.Status.Allocatable[corev1.ResourceName(name)]
	return c.Value(), a.Value()
}

// testDevicePlugin: deploy/device-plugin.yaml as shipped registers with the real kubelet; the
// node advertises the sim TEE (and no hardware TEE this machine lacks); a pod requesting it is
// scheduled and allocated one, a pod requesting more than there is is not; deploy/examples/
// runs as shipped; after a kubelet restart the plugin registers again and pods requesting its
// resource are admitted.
func testDevicePlugin(e *env) {
	t := e.t
	applyShippedNamespace(e)
	manifest := repoFile(t, "deploy/device-plugin.yaml")
	checkImages(e, manifest)
	e.apply(manifest)
	plugin := e.daemonSetPod(systemNS, pluginSelector)
	if plugin.Spec.RuntimeClassName != nil {
		t.Fatalf("the device plugin runs with RuntimeClass %s, want the default", *plugin.Spec.RuntimeClassName)
	}
	err := clients.WaitFor(time.Minute, "the node to advertise "+resourceSim, func() (bool, error) {
		c, a := e.nodeResource(resourceSim)
		return c == 110 && a == 110, fmt.Errorf("capacity %d, allocatable %d; want 110 (-sim-slots)", c, a)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := e.Node()
	for _, absent := range []string{"sgx.intel.com/epc", "inclavare.io/tdx", "inclavare.io/snp"} {
		if q, ok := n.Status.Capacity[corev1.ResourceName(absent)]; ok && !q.IsZero() {
			t.Errorf("node advertises %s %s on a machine without that TEE", q.String(), absent)
		}
	}
	if !strings.Contains(e.waitLogs(systemNS, plugin.Name, "registered with the kubelet"), resourceSim) {
		t.Errorf("the plugin's log does not name %s as registered", resourceSim)
	}

	// A pod asking for the sim TEE is placed and allocated one slot (the kubelet's checkpoint
	// records the allocation); the sim TEE gives no device, no EPC limit.
	e.applyObject(withResource(podSpec("sim-slot", "rune", simNativeEnv, "/app/enclaveprog", "sleep"), resourceSim, 1))
	p := e.waitRunning("default", "sim-slot")
	checkAllocation(e, string(p.UID), resourceSim, 1)
	if res := e.exec("default", "sim-slot", "/app/enclaveprog", "env", "ENCLAVE_EPC_LIMIT_MIB"); res.Stdout != "unset\n" {
		t.Errorf("ENCLAVE_EPC_LIMIT_MIB in a sim pod: %s, want unset", res)
	}
	// More than the node has is never scheduled.
	e.applyObject(withResource(podSpec("sim-too-many", "rune", simNativeEnv, "/app/enclaveprog", "sleep"), resourceSim, 111))
	e.waitPod("default", "sim-too-many", "unschedulable", time.Minute, func(p *corev1.Pod) (bool, string) {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "Insufficient "+resourceSim) {
				return true, ""
			}
		}
		return false, podSummary(p)
	})
	e.deletePod("default", "sim-too-many")

	// deploy/examples/ as shipped: they ask for the sim TEE.
	examples, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples in deploy/examples: %v", err)
	}
	for _, path := range examples {
		manifest := repoFile(t, filepath.Join("deploy", "examples", filepath.Base(path)))
		checkImages(e, manifest)
		for _, d := range manifestDocs(t, manifest) {
			if d.Kind != "Pod" {
				t.Fatalf("%s: a %s; the test runs example pods only", path, d.Kind)
			}
			var pod corev1.Pod
			if err := json.Unmarshal(d.Raw, &pod); err != nil {
				t.Fatal(err)
			}
			e.apply(d.Raw)
			term := e.waitTerminated("default", pod.Name)
			if term.ExitCode != 0 {
				t.Errorf("example %s: exit code %d (%s)", pod.Name, term.ExitCode, term.Message)
			}
			if pod.Name == "hello-enclave" {
				e.waitLogs("default", pod.Name, "Hello from an enclave container!")
			}
			e.deletePod("default", pod.Name)
		}
	}

	// A kubelet restart: the new kubelet removes the plugins' sockets; the plugin registers
	// again, and only then are pods asking for its resource admitted.
	before := strings.Count(e.kubeletLog(), "Got registration request from device plugin")
	if err := e.RestartKubelet(false); err != nil {
		t.Fatal(err)
	}
	err = clients.WaitFor(time.Minute, "the plugin to register with the new kubelet", func() (bool, error) {
		log := e.kubeletLog()
		return strings.Count(log, "Got registration request from device plugin") > before, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitNodeReady(time.Minute); err != nil {
		t.Fatal(err)
	}
	// The running pod kept its slot; a new one gets another.
	e.waitRunning("default", "sim-slot")
	e.applyObject(withResource(podSpec("sim-slot-2", "rune", simNativeEnv, "/app/enclaveprog", "sleep"), resourceSim, 2))
	p2 := e.waitRunning("default", "sim-slot-2")
	checkAllocation(e, string(p2.UID), resourceSim, 2)
	checkAllocation(e, string(p.UID), resourceSim, 1)
	e.deletePod("default", "sim-slot")
	e.deletePod("default", "sim-slot-2")
}

// kubeletLog is the kubelet's log so far (all its runs).
func (e *env) kubeletLog() string {
	data, _ := os.ReadFile(e.kubelet.logPath)
	return string(data)
}

// checkAllocation checks the kubelet's device checkpoint: the pod holds n devices of resource.
func checkAllocation(e *env, podUID, resource string, n int) {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(devicePluginDir, "kubelet_internal_checkpoint"))
	if err != nil {
		e.t.Fatalf("the kubelet's device checkpoint: %v", err)
	}
	var cp struct {
		Data struct {
			PodDeviceEntries []struct {
				PodUID       string
				ResourceName string
				DeviceIDs    map[string][]string
			}
		}
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		e.t.Fatalf("decode the kubelet's device checkpoint: %v\n%s", err, data)
	}
	for _, entry := range cp.Data.PodDeviceEntries {
		if entry.PodUID == podUID && entry.ResourceName == resource {
			got := 0
			for _, ids := range entry.DeviceIDs {
				got += len(ids)
			}
			if got != n {
				e.t.Errorf("pod %s holds %d %s devices, want %d", podUID, got, resource, n)
			}
			return
		}
	}
	e.t.Errorf("the kubelet's device checkpoint has no %s for pod %s:\n%s", resource, podUID, data)
}

// repoRoot is the repository's root.
func repoRoot(t interface{ Fatal(...any) }) string {
	root, err := clients.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
