package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

var (
	artifactsOnce sync.Once
	artifacts     *Artifacts
	artifactsErr  error
	artifactsDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if artifactsDir != "" {
		os.RemoveAll(artifactsDir)
	}
	os.Exit(code)
}

// env is one cluster under test.
type env struct {
	*Cluster
	t *testing.T
}

// startCluster checks the prerequisites, builds (once per machine) or finds the cluster's
// programs, starts a cluster on containerd of generation gen with the test images, and tears
// it down when the test ends, failing it if anything is left on the node.
func startCluster(t *testing.T, gen Generation) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		clients.Unavailable(t, "the Kubernetes tests need root (uid %d)", os.Geteuid())
	}
	start := time.Now()
	ct, busybox, err := FindTools(gen)
	if err != nil {
		clients.Unavailable(t, "%v", err)
	}
	artifactsOnce.Do(func() {
		artifactsDir, artifactsErr = os.MkdirTemp("", "rune-k8s-artifacts-")
		if artifactsErr == nil {
			artifacts, artifactsErr = BuildArtifacts(ct.Go, artifactsDir)
		}
	})
	if artifactsErr != nil {
		t.Fatal(artifactsErr)
	}
	t.Logf("programs ready in %v", time.Since(start).Round(time.Second))

	start = time.Now()
	c, err := Start(ct, gen)
	e := &env{Cluster: c, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:\n%s", c.LogTails(40))
		}
		start := time.Now()
		if err := c.Stop(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left := c.Leftovers(); len(left) > 0 {
			t.Errorf("left on the node after teardown:\n  %s", strings.Join(left, "\n  "))
		}
		t.Logf("cluster down in %v", time.Since(start).Round(100*time.Millisecond))
	})
	if c != nil && len(c.Recovered) > 0 {
		t.Logf("a killed run of this harness had left the node changed; put back:\n  %s", strings.Join(c.Recovered, "\n  "))
	}
	if err != nil {
		t.Fatalf("start the cluster on %s: %v", gen, err)
	}
	if err := c.ImportImages(artifacts, busybox); err != nil {
		t.Fatal(err)
	}
	// Every scenario needs the RuntimeClass (as shipped); testRuntimeClass checks it.
	e.apply(repoFile(t, "deploy/runtimeclass.yaml"))
	t.Logf("cluster on %s up in %v (Kubernetes %s, etcd %s)", gen, time.Since(start).Round(100*time.Millisecond), KubernetesVersion, EtcdVersion)
	return e
}

// kubectl runs kubectl, which must exit 0, and returns its stdout.
func (e *env) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.kubectlOK(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// apply applies manifests (YAML or JSON) given as bytes.
func (e *env) apply(manifest []byte) {
	e.t.Helper()
	res, err := e.Kubectl(manifest, "apply", "-f", "-")
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("kubectl apply: %s", res)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// applyObject applies one object.
func (e *env) applyObject(obj any) {
	e.t.Helper()
	data, err := json.Marshal(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	e.apply(data)
}

// repoFile reads a file of the repository.
func repoFile(t *testing.T, rel string) []byte {
	t.Helper()
	root, err := clients.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// manifestDocs splits a multi-document YAML file into its documents, each with its kind.
func manifestDocs(t *testing.T, data []byte) []struct {
	Kind string
	Raw  []byte
} {
	t.Helper()
	var docs []struct {
		Kind string
		Raw  []byte
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		var meta metav1.TypeMeta
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		if string(j) == "null" {
			continue
		}
		if err := json.Unmarshal(j, &meta); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, struct {
			Kind string
			Raw  []byte
		}{meta.Kind, j})
	}
}

// pod returns a pod, and whether it exists.
func (e *env) pod(ns, name string) (*corev1.Pod, bool) {
	e.t.Helper()
	res, err := e.Kubectl(nil, "-n", ns, "get", "pod", name, "-o", "json")
	if err != nil {
		e.t.Fatal(err)
	}
	if res.ExitCode != 0 {
		if strings.Contains(res.Stderr, "NotFound") {
			return nil, false
		}
		e.t.Fatalf("kubectl get pod %s: %s", name, res)
	}
	var p corev1.Pod
	if err := json.Unmarshal([]byte(res.Stdout), &p); err != nil {
		e.t.Fatalf("decode pod %s: %v", name, err)
	}
	return &p, true
}

// waitPod waits until cond holds for the pod and returns it; cond returns what it saw.
func (e *env) waitPod(ns, name, what string, timeout time.Duration, cond func(*corev1.Pod) (bool, string)) *corev1.Pod {
	e.t.Helper()
	var p *corev1.Pod
	err := clients.WaitFor(timeout, fmt.Sprintf("pod %s/%s to be %s", ns, name, what), func() (bool, error) {
		var ok bool
		p, ok = e.pod(ns, name)
		if !ok {
			return false, errors.New("no such pod")
		}
		done, seen := cond(p)
		return done, errors.New(seen)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitRunning waits until every container of the pod is running and ready.
func (e *env) waitRunning(ns, name string) *corev1.Pod {
	e.t.Helper()
	return e.waitPod(ns, name, "Running", 2*time.Minute, func(p *corev1.Pod) (bool, string) {
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			e.t.Fatalf("pod %s/%s ended (%s) instead of running: %s", ns, name, p.Status.Phase, podSummary(p))
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount > 0 {
				res, _ := e.Kubectl(nil, "-n", ns, "logs", "--previous", name, "-c", cs.Name)
				e.t.Fatalf("pod %s/%s: container %s restarted instead of running: %s; its log: %s", ns, name, cs.Name, podSummary(p), res)
			}
		}
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
			return false, podSummary(p)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil || !cs.Ready {
				return false, podSummary(p)
			}
		}
		return true, ""
	})
}

// waitTerminated waits until the pod's only container terminated and returns its state.
func (e *env) waitTerminated(ns, name string) *corev1.ContainerStateTerminated {
	e.t.Helper()
	p := e.waitPod(ns, name, "terminated", 2*time.Minute, func(p *corev1.Pod) (bool, string) {
		if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil {
			return true, ""
		}
		return false, podSummary(p)
	})
	return p.Status.ContainerStatuses[0].State.Terminated
}

// podSummary is what a failure report says about a pod.
func podSummary(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			fmt.Fprintf(&b, "; %s: %s", c.Type, c.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil:
			fmt.Fprintf(&b, "; %s running (ready %v)", cs.Name, cs.Ready)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, "; %s terminated: exit %d %s %s", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason, cs.State.Terminated.Message)
		}
	}
	return b.String()
}

// deletePod deletes a pod and waits until it is gone.
func (e *env) deletePod(ns, name string) {
	e.t.Helper()
	e.kubectl("-n", ns, "delete", "pod", name, "--wait=true", "--timeout=90s")
}

// exec runs kubectl exec; kubectl exits with the command's exit code.
func (e *env) exec(ns, name string, argv ...string) clients.Result {
	e.t.Helper()
	res, err := e.Kubectl(nil, append([]string{"-n", ns, "exec", name, "--"}, argv...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// waitLogs waits until the pod's logs hold want.
func (e *env) waitLogs(ns, name, want string) string {
	e.t.Helper()
	var out string
	err := clients.WaitFor(60*time.Second, fmt.Sprintf("%q in the logs of %s", want, name), func() (bool, error) {
		res, err := e.Kubectl(nil, "-n", ns, "logs", name)
		if err != nil {
			return false, err
		}
		out = res.Stdout
		return strings.Contains(out, want), fmt.Errorf("logs: %s", res)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// containerID is the containerd id of the pod's container name.
func containerID(t *testing.T, p *corev1.Pod, name string) string {
	t.Helper()
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			id, ok := strings.CutPrefix(cs.ContainerID, "containerd://")
			if !ok {
				t.Fatalf("container %s of %s: id %q is not containerd's", name, p.Name, cs.ContainerID)
			}
			return id
		}
	}
	t.Fatalf("pod %s has no container %s", p.Name, name)
	return ""
}

// runeState is rune's state directory of a container of the node.
func (e *env) runeState(id string) string { return filepath.Join(e.RuneRoot, Namespace, id) }

// hasRuneState reports whether rune keeps a container id.
func (e *env) hasRuneState(id string) bool {
	_, err := os.Stat(e.runeState(id))
	return err == nil
}

// runeContainers lists the containers rune keeps on the node.
func (e *env) runeContainers() []string {
	entries, _ := os.ReadDir(filepath.Join(e.RuneRoot, Namespace))
	var ids []string
	for _, d := range entries {
		ids = append(ids, d.Name())
	}
	return ids
}

// podSpec is a host-network pod with one container of the workload image that stops at once.
func podSpec(name, runtimeClass string, env map[string]string, command ...string) *corev1.Pod {
	grace := int64(1)
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app.kubernetes.io/part-of": "inclavare-tests"}},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           WorkloadImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         command,
			}},
		},
	}
	if runtimeClass != "" {
		p.Spec.RuntimeClassName = &runtimeClass
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: k, Value: env[k]})
	}
	return p
}

// withResource makes the pod's container request and be limited to n of resource.
func withResource(p *corev1.Pod, name string, n int64) *corev1.Pod {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceName(name): q},
		Limits:   corev1.ResourceList{corev1.ResourceName(name): q},
	}
	return p
}
