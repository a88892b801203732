// Command k8s measures rune against runc through a real kubelet (the single-node cluster of
// tests/k8s): pods from creation to Running per second, and the memory N running pods cost the
// node, for pods without a RuntimeClass (containerd's runc handler), pods with
// runtimeClassName rune (ordinary containers under rune) and rune enclave pods (sim,
// builtin:native).
//
// It must never touch anything it did not create: the cluster, its pods and its directory are
// its own and are removed at the end (tests/k8s restores the node).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/k8s"
)

func main() {
	batch := flag.Int("n", 10, "pods created at once per batch")
	rounds := flag.Int("rounds", 3, "batches per kind of pod (kinds alternating)")
	memPods := flag.Int("mem-pods", 10, "running pods per kind whose memory is measured")
	gen := flag.Int("containerd", 1, "the node's containerd: 1 (Debian's 1.6) or 2 (2.4.2)")
	flag.Parse()
	if err := run(*batch, *rounds, *memPods, k8s.Generation(*gen)); err != nil {
		fmt.Fprintln(os.Stderr, "bench/k8s:", err)
		os.Exit(1)
	}
}

// kind is one kind of pod measured.
type kind struct {
	name, runtimeClass string
	env                map[string]string
	command            []string
}

var kinds = []kind{
	{name: "runc", command: []string{"sleep", "600"}},
	{name: "rune", runtimeClass: "rune", command: []string{"sleep", "600"}},
	{name: "rune-enclave", runtimeClass: "rune", env: map[string]string{"ENCLAVE_TYPE": "sim", "ENCLAVE_RUNTIME_PATH": "builtin:native"},
		command: []string{"/app/enclaveprog", "sleep"}},
}

func run(batch, rounds, memPods int, gen k8s.Generation) (err error) {
	if batch < 1 || rounds < 1 || memPods < 1 {
		return errors.New("-n, -rounds and -mem-pods must be at least 1")
	}
	if gen != k8s.Containerd1 && gen != k8s.Containerd2 {
		return fmt.Errorf("-containerd %d: want 1 or 2", gen)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	tools, busybox, err := k8s.FindTools(gen)
	if err != nil {
		return err
	}
	artifactsDir, err := os.MkdirTemp("", "bench-k8s-artifacts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(artifactsDir)
	artifacts, err := k8s.BuildArtifacts(tools.Go, artifactsDir)
	if err != nil {
		return err
	}
	c, err := k8s.Start(tools, gen)
	defer func() {
		if serr := c.Stop(); serr != nil {
			fmt.Fprintln(os.Stderr, "bench/k8s: teardown:", serr)
			if err == nil {
				err = serr
			}
		}
		if left := c.Leftovers(); len(left) > 0 && err == nil {
			err = fmt.Errorf("left on the node: %v", left)
		}
	}()
	if err != nil {
		return err
	}
	if err := c.ImportImages(artifacts, busybox); err != nil {
		return err
	}
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	rc, err := os.ReadFile(filepath.Join(root, "deploy", "runtimeclass.yaml"))
	if err != nil {
		return err
	}
	if res, err := c.Kubectl(rc, "apply", "-f", "-"); err != nil || res.ExitCode != 0 {
		return fmt.Errorf("apply the RuntimeClass: %v %s", err, res)
	}
	client, api, err := c.APIClient()
	if err != nil {
		return err
	}
	b := &bench{c: c, client: client, api: api}

	// One unmeasured pod of each kind: first use loads binaries and the image into the caches.
	for _, k := range kinds {
		if _, err := b.batch(k, "warmup", 1); err != nil {
			return err
		}
	}
	perSecond := map[string][]float64{}
	for r := range rounds {
		for i := range kinds {
			k := kinds[(i+r)%len(kinds)] // rotate the order so that drift hits every kind alike
			d, err := b.batch(k, strconv.Itoa(r), batch)
			if err != nil {
				return err
			}
			perSecond[k.name] = append(perSecond[k.name], float64(batch)/d.Seconds())
		}
	}
	mem := map[string]memory{}
	for _, k := range kinds {
		m, err := b.memory(k, memPods)
		if err != nil {
			return err
		}
		mem[k.name] = m
	}

	fmt.Printf("Kubernetes %s, one node, %s, host-network pods of busybox sleep (enclave: sim builtin:native)\n", k8s.KubernetesVersion, gen)
	fmt.Printf("%d batches of %d pods per kind (kinds rotating); memory with %d running pods per kind\n\n", rounds, batch, memPods)
	fmt.Printf("%-13s %18s %18s %18s\n", "", "pods/s to Running", "pod processes PSS", "kubepods cgroup")
	fmt.Printf("%-13s %18s %18s %18s\n", "", "(median)", "KiB per pod", "KiB per pod")
	for _, k := range kinds {
		m := mem[k.name]
		fmt.Printf("%-13s %18.2f %18.0f %18.0f\n", k.name, median(perSecond[k.name]), m.pssPerPod, m.cgroupPerPod)
	}
	base := kinds[0].name
	for _, k := range kinds[1:] {
		fmt.Printf("\n%s/%s: pods/s %.2f, pod processes PSS %.2f, kubepods cgroup %.2f", k.name, base,
			median(perSecond[k.name])/median(perSecond[base]),
			mem[k.name].pssPerPod/mem[base].pssPerPod, mem[k.name].cgroupPerPod/mem[base].cgroupPerPod)
	}
	fmt.Println()
	for _, k := range kinds {
		fmt.Printf("%s pods/s per batch: %s\n", k.name, join(perSecond[k.name]))
	}
	return nil
}

type bench struct {
	c      *k8s.Cluster
	client *http.Client
	api    string
}

// pod is a host-network pod of kind k, labelled with its batch.
func pod(k kind, batch string, i int) corev1.Pod {
	grace := int64(1)
	p := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%s-%s-%d", k.name, batch, i), Namespace: "default",
			Labels: map[string]string{"bench": k.name + "-" + batch}},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name: "main", Image: k8s.WorkloadImage, ImagePullPolicy: corev1.PullNever, Command: k.command,
			}},
		},
	}
	if k.runtimeClass != "" {
		p.Spec.RuntimeClassName = &k.runtimeClass
	}
	for name, v := range k.env {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: name, Value: v})
	}
	return p
}

// batch creates n pods of kind k at once, waits until all run, and deletes them; it returns
// the time from the create request until the last was seen Running.
func (b *bench) batch(k kind, name string, n int) (time.Duration, error) {
	label := k.name + "-" + name
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	for i := range n {
		list.Items = append(list.Items, pod(k, name, i))
	}
	data, err := json.Marshal(list)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if res, err := b.c.Kubectl(data, "create", "-f", "-"); err != nil || res.ExitCode != 0 {
		return 0, fmt.Errorf("create %s pods: %v %s", label, err, res)
	}
	err = b.waitRunning(label, n)
	d := time.Since(start)
	if derr := b.deleteBatch(label); err == nil {
		err = derr
	}
	return d, err
}

// waitRunning polls the API server until n pods labelled bench=label are Running with every
// container ready.
func (b *bench) waitRunning(label string, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pods, err := b.pods(label)
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				return fmt.Errorf("pod %s ended (%s): %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
			}
			if p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready {
				running++
			}
		}
		if running == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d pods %s running after 5 minutes", running, n, label)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bench) pods(label string) ([]corev1.Pod, error) {
	resp, err := b.client.Get(b.api + "/api/v1/namespaces/default/pods?labelSelector=bench%3D" + label)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list pods: %s: %s", resp.Status, body)
	}
	var list corev1.PodList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (b *bench) deleteBatch(label string) error {
	res, err := b.c.Kubectl(nil, "delete", "pods", "-l", "bench="+label, "--wait=true", "--timeout=5m")
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("delete pods %s: %s", label, res)
	}
	return err
}

// memory is what n running pods of one kind cost, per pod.
type memory struct {
	// pssPerPod: the proportional set size of the pods' shims and every process below them
	// (pause, workload, runelet), shared pages split among sharers.
	pssPerPod float64
	// cgroupPerPod: the growth of the kubepods memory cgroup (the containers' memory,
	// page cache charged to them included).
	cgroupPerPod float64
}

func (b *bench) memory(k kind, n int) (memory, error) {
	label := k.name + "-mem"
	time.Sleep(2 * time.Second) // let the previous pods' memory go
	cg0, err := kubepodsMemory()
	if err != nil {
		return memory{}, err
	}
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	for i := range n {
		list.Items = append(list.Items, pod(k, "mem", i))
	}
	data, _ := json.Marshal(list)
	if res, err := b.c.Kubectl(data, "create", "-f", "-"); err != nil || res.ExitCode != 0 {
		return memory{}, fmt.Errorf("create %s pods: %v %s", label, err, res)
	}
	var m memory
	err = b.waitRunning(label, n)
	if err == nil {
		time.Sleep(2 * time.Second) // let start-up garbage be collected
		var pss, cg1 float64
		if pss, err = b.podProcessesPSS(); err == nil {
			if cg1, err = kubepodsMemory(); err == nil {
				m = memory{pssPerPod: pss / float64(n), cgroupPerPod: (cg1 - cg0) / float64(n)}
			}
		}
	}
	if derr := b.deleteBatch(label); err == nil {
		err = derr
	}
	return m, err
}

// podProcessesPSS sums the PSS (KiB) of the node's shims (of this cluster's containerd) and of
// every process below them.
func (b *bench) podProcessesPSS() (float64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	parent := map[int]int{}
	var shims []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, err := parentOf(pid)
		if err != nil {
			continue
		}
		parent[pid] = ppid
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0 := filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0])
		if strings.HasPrefix(argv0, "containerd-shim-") && strings.Contains(string(cmdline), b.c.Sock) {
			shims = append(shims, pid)
		}
	}
	if len(shims) == 0 {
		return 0, errors.New("no shim of the node's containerd is running")
	}
	in := map[int]bool{}
	for _, s := range shims {
		in[s] = true
	}
	var total float64
	for pid := range parent {
		for p := pid; p > 1; p = parent[p] {
			if in[p] {
				pss, err := statusKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
				if err == nil {
					total += pss
				}
				break
			}
		}
	}
	return total, nil
}

// kubepodsMemory is the memory (KiB) charged to the kubelet's kubepods cgroup.
func kubepodsMemory() (float64, error) {
	for _, p := range []string{
		"/sys/fs/cgroup/memory/" + k8s.CgroupRoot + "/kubepods/memory.usage_in_bytes", // v1
		"/sys/fs/cgroup/" + k8s.CgroupRoot + "/kubepods/memory.current",               // v2
	} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
		return v / 1024, err
	}
	return 0, errors.New("no kubepods memory cgroup found")
}

func parentOf(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after the last ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("short stat of %d", pid)
	}
	return strconv.Atoi(f[1])
}

// statusKiB reads a "Key:  N kB" line of a /proc file.
func statusKiB(path, key string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s line", path, key)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func join(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, strconv.FormatFloat(x, 'f', 2, 64))
	}
	return strings.Join(parts, " ")
}
