package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/shelter"
	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// testAttestation: a confidential service in an enclave pod (sim, builtin:native) and
// inclavared as a DaemonSet of enclave pods (its own evidence from its enclave, through the
// runelet's agent socket) in front of it; shelter on the host attests both: PASS with the right
// measurement, FAIL with a wrong one. Deleting the pods while attested connections are open
// ends those connections and leaves nothing.
func testAttestation(e *env) {
	t := e.t
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	svcAddr, incAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	work := filepath.Join(e.Dir, "attestation")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}

	e.applyObject(podSpec("confidential", "rune", simNativeEnv,
		"/app/confidential-service", "--listen", "tcp://"+svcAddr, "--message", "hello from a pod"))
	svcPod := e.waitRunning("default", "confidential")
	waitListening(e, svcAddr, svcPod.Name)
	svcMeasurement := e.runeAttest(containerID(t, svcPod, "main"))

	simRoot := filepath.Join(work, "sim-root.pem")
	writeFile(t, simRoot, e.runeOutput("sim-platform-cert"))
	writePolicy := func(name string, measurements ...string) string {
		b, err := json.Marshal(map[string]any{"tees": map[string]any{"sim": map[string]any{
			"measurements": map[string]any{"measurement": measurements}, "allow_unknown_tcb": true}}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(work, name)
		writeFile(t, p, string(b))
		return p
	}
	good := writePolicy("good.json", svcMeasurement)
	wrong := writePolicy("wrong.json", strings.Repeat("ab", 32))

	// inclavared's configuration: the policy its upstream must satisfy and the sim anchor.
	upstream, _ := os.ReadFile(good)
	root, _ := os.ReadFile(simRoot)
	e.applyObject(&corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "inclavared", Namespace: "default"},
		Data:       map[string]string{"upstream-policy.json": string(upstream), "sim-root.pem": string(root)},
	})
	ds := inclavaredDaemonSet(incAddr, svcAddr)
	e.applyObject(ds)
	incPod := e.daemonSetPod("default", "app.kubernetes.io/name=inclavared")
	waitListening(e, incAddr, incPod.Name)
	incPolicy := writePolicy("inclavared.json", e.runeAttest(containerID(t, incPod, "inclavared")))

	shelterRun := func(policyPath string) (string, int) {
		cmd := exec.Command(filepath.Join(e.Bin, "shelter"), "remoteattestation", "--addr", "tcp://"+incAddr,
			"--policy", policyPath, "--inclavared-policy", incPolicy, "--sim-root", simRoot, "--output", "json")
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("shelter: %v", err)
		}
		return string(out), 0
	}
	out, code := shelterRun(good)
	var verdict struct {
		OK        bool `json:"ok"`
		Container struct {
			Measurements map[string]string `json:"measurements"`
		} `json:"container"`
	}
	if err := json.Unmarshal([]byte(out), &verdict); err != nil {
		t.Fatalf("shelter --output json: %v\n%s", err, out)
	}
	if code != 0 || !verdict.OK || !strings.Contains(out, svcMeasurement) {
		t.Fatalf("shelter with the right measurement: exit %d, ok %v\n%s\ninclavared's log:\n%s", code, verdict.OK, out, e.podLogs("default", incPod.Name))
	}
	out, code = shelterRun(wrong)
	if code != 1 || !strings.Contains(out, "measurement") || !strings.Contains(out, `"ok": false`) && !strings.Contains(out, `"ok":false`) {
		t.Fatalf("shelter with a wrong measurement: exit %d, want 1 naming the measurement\n%s", code, out)
	}

	// Attested connections held open, to inclavared and to the service, while their pods go.
	var opts attestation.Options
	if err := (shelter.AnchorFiles{Sim: []string{simRoot}}).Apply(&opts); err != nil {
		t.Fatal(err)
	}
	open := func(addr, policyPath string) net.Conn {
		pol, err := policy.Load(policyPath)
		if err != nil {
			t.Fatal(err)
		}
		client, err := enclavetls.NewClient(enclavetls.Config{Verifier: &enclavetls.Verifier{Options: opts, Policy: pol, RequireFresh: true}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := client.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("attested connection to %s: %v", addr, err)
		}
		if conn.Peer() == nil {
			t.Fatalf("connection to %s: no attested peer", addr)
		}
		return conn
	}
	conns := []net.Conn{open(incAddr, incPolicy), open(svcAddr, good)}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	e.kubectl("-n", "default", "delete", "daemonset", "inclavared", "--cascade=foreground", "--wait=true", "--timeout=90s")
	e.deletePod("default", "confidential")
	e.kubectl("-n", "default", "delete", "configmap", "inclavared")
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection %d still open after its pod was deleted: %v", i, err)
		}
	}
	for _, addr := range []string{svcAddr, incAddr} {
		if l, err := net.Listen("tcp", addr); err != nil {
			t.Errorf("%s still in use after the pods were deleted: %v", addr, err)
		} else {
			l.Close()
		}
	}
	if ids := e.runeContainers(); len(ids) != 0 {
		t.Errorf("rune still keeps %v after the pods were deleted", ids)
	}
	if err := clients.WaitFor(30*time.Second, "the enclave pods' shims to exit", func() (bool, error) {
		pids := e.shimPids()
		return len(pids) == 0, fmt.Errorf("rune shims still running: %v", pids)
	}); err != nil {
		t.Error(err)
	}
}

// inclavaredDaemonSet runs inclavared on every rune node, in an enclave (its evidence from the
// runelet), for verifiers on incAddr, in front of the service on svcAddr.
func inclavaredDaemonSet(incAddr, svcAddr string) *appsv1.DaemonSet {
	labels := map[string]string{"app.kubernetes.io/name": "inclavared"}
	pod := podSpec("", "rune", simNativeEnv, "/app/inclavared", "--listen", "tcp://"+incAddr,
		"--upstream", "tcp://"+svcAddr, "--upstream-policy", "/etc/inclavared/upstream-policy.json",
		"--sim-root", "/etc/inclavared/sim-root.pem", "--attester", "agent")
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	pod.Spec.Containers[0].Name = "inclavared"
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/etc/inclavared", ReadOnly: true}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "inclavared"}}}}}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "inclavared", Namespace: "default", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}
}

// waitListening waits until something accepts TCP connections on addr.
func waitListening(e *env, addr, pod string) {
	e.t.Helper()
	err := clients.WaitFor(60*time.Second, addr+" to accept connections", func() (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil, err
	})
	if err != nil {
		e.t.Fatalf("%v; log of %s:\n%s", err, pod, e.podLogs("default", pod))
	}
}

// runeOutput runs rune with the node's sim platform key and returns its stdout.
func (e *env) runeOutput(args ...string) string {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.Bin, "rune"), args...)
	cmd.Env = append(os.Environ(), "RUNE_SIM_PLATFORM_KEY="+e.SimPlatformKey)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		e.t.Fatalf("rune %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// runeAttest returns the measurement of an enclave container of the node, as the node's rune
// reports it.
func (e *env) runeAttest(id string) string {
	e.t.Helper()
	out := e.runeOutput("--root", filepath.Join(e.RuneRoot, Namespace), "attest", id)
	var att struct{ Measurement string }
	if err := json.Unmarshal([]byte(out), &att); err != nil || len(att.Measurement) != 64 {
		e.t.Fatalf("rune attest %s: %v %q", id, err, out)
	}
	return att.Measurement
}

// podLogs is a pod's log, for failure reports.
func (e *env) podLogs(ns, name string) string {
	res, err := e.Kubectl(nil, "-n", ns, "logs", name)
	if err != nil {
		return err.Error()
	}
	return res.Stdout + res.Stderr
}

// shimPids lists the running containerd-shim-rune-v2 processes of this cluster's containerd.
func (e *env) shimPids() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		var pid int
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == "containerd-shim-rune-v2" && strings.Contains(string(cmdline), e.Sock) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func writeFile(t interface{ Fatal(...any) }, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
