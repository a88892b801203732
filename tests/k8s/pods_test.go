package k8s

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
)

// TestKubernetes runs every scenario on a cluster whose node runs Debian's containerd 1.6.
func TestKubernetes(t *testing.T) { scenarios(t, startCluster(t, Containerd1)) }

// TestKubernetesContainerd2 runs them on containerd 2.x with the shipped 2.x drop-in.
func TestKubernetesContainerd2(t *testing.T) { scenarios(t, startCluster(t, Containerd2)) }

func scenarios(t *testing.T, e *env) {
	t.Run("RuntimeClass", func(t *testing.T) { e.t = t; testRuntimeClass(e) })
	t.Run("OrdinaryRunePod", func(t *testing.T) { e.t = t; testOrdinaryPod(e) })
	t.Run("SimNativeExec", func(t *testing.T) { e.t = t; testSimNative(e) })
	t.Run("SimWasm", func(t *testing.T) { e.t = t; testSimWasm(e) })
	t.Run("Carrier", func(t *testing.T) { e.t = t; testCarrier(e) })
	t.Run("DevicePlugin", func(t *testing.T) { e.t = t; testDevicePlugin(e) })
	t.Run("Attestation", func(t *testing.T) { e.t = t; testAttestation(e) })
	t.Run("Faults", func(t *testing.T) { e.t = t; testFaults(e) })
	// Last: it reconfigures the node's containerd (and restores it).
	t.Run("Installer", func(t *testing.T) { e.t = t; testInstaller(e) })
}

// testRuntimeClass applies deploy/runtimeclass.yaml as shipped.
func testRuntimeClass(e *env) {
	t := e.t
	e.apply(repoFile(t, "deploy/runtimeclass.yaml"))
	var rc nodev1.RuntimeClass
	if err := json.Unmarshal([]byte(e.kubectl("get", "runtimeclass", "rune", "-o", "json")), &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Handler != HandlerRune || rc.Scheduling == nil || rc.Scheduling.NodeSelector[RuneLabel] != "true" {
		t.Fatalf("RuntimeClass rune: handler %q, scheduling %+v", rc.Handler, rc.Scheduling)
	}
	n, err := e.Node()
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[RuneLabel] != "true" {
		t.Fatalf("node labels %v lack %s=true", n.Labels, RuneLabel)
	}
}

// testOrdinaryPod: a pod with runtimeClassName rune and no enclave settings runs under rune
// (sandbox and container), with the RuntimeClass's overhead, logs, exec with exit codes, and
// leaves nothing in rune's root once deleted.
func testOrdinaryPod(e *env) {
	t := e.t
	e.applyObject(podSpec("ordinary", "rune", nil, "sh", "-c", "echo started; exec sleep 600"))
	p := e.waitRunning("default", "ordinary")
	if p.Spec.Overhead.Memory().String() != "24Mi" || p.Spec.Overhead.Cpu().String() != "10m" {
		t.Errorf("pod overhead %v, want the RuntimeClass's (cpu 10m, memory 24Mi)", p.Spec.Overhead)
	}
	id := containerID(t, p, "main")
	if !e.hasRuneState(id) {
		t.Fatalf("rune has no state of container %s (rune's containers: %v)", id, e.runeContainers())
	}
	if ids := e.runeContainers(); len(ids) != 2 {
		t.Fatalf("rune's containers %v, want the pod's sandbox and its container", ids)
	}
	e.waitLogs("default", "ordinary", "started")
	for _, tc := range []struct {
		argv []string
		out  string
		code int
	}{
		{[]string{"echo", "exec works"}, "exec works\n", 0},
		{[]string{"sh", "-c", "echo before; exit 5"}, "before\n", 5},
		// Without a shared PID namespace, PID 1 of the container is its entrypoint (sh exec'd sleep).
		{[]string{"cat", "/proc/1/cmdline"}, "sleep\x00600\x00", 0},
	} {
		res := e.exec("default", "ordinary", tc.argv...)
		if res.ExitCode != tc.code || res.Stdout != tc.out {
			t.Errorf("kubectl exec %q: %s; want exit %d, stdout %q", tc.argv, res, tc.code, tc.out)
		}
	}
	e.deletePod("default", "ordinary")
	if ids := e.runeContainers(); len(ids) != 0 {
		t.Fatalf("rune still keeps %v after the pod was deleted", ids)
	}
}

// simNativeEnv makes a container an enclave container running its entrypoint in
// builtin:native on the sim TEE.
var simNativeEnv = map[string]string{"ENCLAVE_TYPE": "sim", "ENCLAVE_RUNTIME_PATH": "builtin:native"}

// simWasmEnv: a WebAssembly module in builtin:wasm on the sim TEE.
var simWasmEnv = map[string]string{"ENCLAVE_TYPE": "sim", "ENCLAVE_RUNTIME_PATH": "builtin:wasm"}

// testSimNative: an enclave pod (sim, builtin:native) through the kubelet; kubectl exec passes
// its argv exactly (spaces, non-ASCII, empty arguments) and returns the exit code, and the
// enclave settings never reach the workload.
func testSimNative(e *env) {
	t := e.t
	e.applyObject(podSpec("sim-native", "rune", simNativeEnv, "/app/enclaveprog", "sleep"))
	p := e.waitRunning("default", "sim-native")
	e.waitLogs("default", "sim-native", "sleeping")
	id := containerID(t, p, "main")
	st, err := os.ReadFile(filepath.Join(e.runeState(id), "enclave.json"))
	if err != nil || !strings.Contains(string(st), "builtin:native") {
		t.Fatalf("rune's state of %s does not record the enclave runtime: %v %.300s", id, err, st)
	}
	for _, tc := range []struct {
		argv []string
		out  string
		code int
	}{
		{[]string{"/app/enclaveprog", "args", "a b", "ü", "", "--x=1"}, "|a b|ü||--x=1|\n", 0},
		{[]string{"/app/enclaveprog", "exit", "6"}, "exit 6\n", 6},
		{[]string{"/app/enclaveprog", "exit", "0"}, "exit 0\n", 0},
		{[]string{"/app/enclaveprog", "env", "ENCLAVE_TYPE"}, "unset\n", 0},
	} {
		res := e.exec("default", "sim-native", tc.argv...)
		if res.ExitCode != tc.code || res.Stdout != tc.out {
			t.Errorf("kubectl exec %q: %s; want exit %d, stdout %q", tc.argv, res, tc.code, tc.out)
		}
	}
	e.deletePod("default", "sim-native")
	if e.hasRuneState(id) {
		t.Fatalf("rune still keeps %s after the pod was deleted", id)
	}
}

// testSimWasm: WebAssembly enclave pods: exit codes become the pod's phase and the container's
// exit code; a running module takes wasm execs.
func testSimWasm(e *env) {
	t := e.t
	for _, tc := range []struct {
		name  string
		argv  []string
		code  int32
		phase corev1.PodPhase
		log   string
	}{
		{"wasm-hello", []string{"/app/hello.wasm", "0"}, 0, corev1.PodSucceeded, "Hello from an enclave container!"},
		{"wasm-exit", []string{"/app/prog.wasm", "exit", "7"}, 7, corev1.PodFailed, "exit 7"},
	} {
		e.applyObject(podSpec(tc.name, "rune", simWasmEnv, tc.argv...))
		term := e.waitTerminated("default", tc.name)
		if term.ExitCode != tc.code {
			t.Errorf("%s: exit code %d, want %d", tc.name, term.ExitCode, tc.code)
		}
		e.waitPod("default", tc.name, string(tc.phase), 60*time.Second, func(p *corev1.Pod) (bool, string) {
			return p.Status.Phase == tc.phase, podSummary(p)
		})
		e.waitLogs("default", tc.name, tc.log)
		e.deletePod("default", tc.name)
	}

	e.applyObject(podSpec("wasm-sleeper", "rune", simWasmEnv, "/app/prog.wasm", "sleep"))
	e.waitRunning("default", "wasm-sleeper")
	e.waitLogs("default", "wasm-sleeper", "sleeping")
	for _, tc := range []struct {
		argv []string
		out  string
		code int
	}{
		{[]string{"/app/prog.wasm", "args", "a b", "ü"}, "|a b|ü|\n", 0},
		{[]string{"/app/prog.wasm", "exit", "3"}, "exit 3\n", 3},
	} {
		res := e.exec("default", "wasm-sleeper", tc.argv...)
		if res.ExitCode != tc.code || res.Stdout != tc.out {
			t.Errorf("kubectl exec %q: %s; want exit %d, stdout %q", tc.argv, res, tc.code, tc.out)
		}
	}
	e.deletePod("default", "wasm-sleeper")
	if ids := e.runeContainers(); len(ids) != 0 {
		t.Fatalf("rune still keeps %v after the pods were deleted", ids)
	}
}

// testCarrier: ordinary pods converted into enclave containers by the shim's carriers
// (RUNE_CARRIER), which the workload never sees; the converted bundle carries the signed
// manifest.
func testCarrier(e *env) {
	t := e.t
	e.applyObject(podSpec("carrier-wasm", "rune", map[string]string{"RUNE_CARRIER": "wasm"}, "/app/hello.wasm", "3"))
	term := e.waitTerminated("default", "carrier-wasm")
	if term.ExitCode != 3 {
		t.Errorf("carrier-wasm: exit code %d, want 3 (%s)", term.ExitCode, term.Message)
	}
	e.waitLogs("default", "carrier-wasm", "Hello from an enclave container!")
	p, _ := e.pod("default", "carrier-wasm")
	id := containerID(t, p, "main")
	if log, _ := os.ReadFile(e.containerd.logPath); !regexp.MustCompile(`msg="converted to an enclave container".* carrier=wasm .*id=` + id).Match(log) {
		t.Errorf("containerd's log has no conversion of %s by the wasm carrier", id)
	}
	e.deletePod("default", "carrier-wasm")

	e.applyObject(podSpec("carrier-native", "rune", map[string]string{"RUNE_CARRIER": "native"}, "/app/enclaveprog", "sleep"))
	p = e.waitRunning("default", "carrier-native")
	id = containerID(t, p, "main")
	// The converted bundle, which containerd keeps while the container runs.
	bundle := e.bundle(id)
	cfg, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatalf("bundle of %s: %v", id, err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(cfg, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Annotations["io.inclavare.carrier"] != "native" || spec.Annotations["io.inclavare.enclave-manifest.required"] != "true" ||
		spec.Annotations["enclave.runtime.path"] != "builtin:native" {
		t.Errorf("converted bundle's annotations %v, want io.inclavare.carrier=native, a required manifest, builtin:native", spec.Annotations)
	}
	if _, err := os.Stat(filepath.Join(bundle, "enclave-manifest.json")); err != nil {
		t.Errorf("no enclave manifest in the bundle: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.runeState(id), "enclave.json")); err != nil {
		t.Errorf("rune does not run %s as an enclave container: %v", id, err)
	}
	for _, name := range []string{"RUNE_CARRIER", "ENCLAVE_TYPE"} {
		if res := e.exec("default", "carrier-native", "/app/enclaveprog", "env", name); res.ExitCode != 0 || res.Stdout != "unset\n" {
			t.Errorf("%s as the converted workload sees it: %s, want unset", name, res)
		}
	}
	e.deletePod("default", "carrier-native")
	if ids := e.runeContainers(); len(ids) != 0 {
		t.Fatalf("rune still keeps %v after the pods were deleted", ids)
	}
}

// bundle is containerd's bundle directory of a container of the CRI namespace.
func (e *env) bundle(id string) string {
	return filepath.Join(e.Dir, "containerd", "state", "io.containerd.runtime.v2.task", Namespace, id)
}
