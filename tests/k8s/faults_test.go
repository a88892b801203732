package k8s

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// faultPod is a rune pod the fault scenario runs through crashes.
type faultPod struct {
	name string
	env  map[string]string
	argv []string
	id   string // containerd's id of its container
}

// testFaults: kill -9 of the kubelet, then of containerd, with rune pods running (ordinary, sim
// native, sim wasm). The pods keep running through both, untouched (same containers, no
// restarts) and reachable (exec) once the daemon is back; a workload that dies while a daemon
// is down is reported with its real exit status afterwards; deleting the pods leaves no
// container, shim or state behind.
func testFaults(e *env) {
	t := e.t
	pods := []*faultPod{
		{name: "fault-ordinary", argv: []string{"sh", "-c", "echo sleeping; exec sleep 600"}},
		{name: "fault-native", env: simNativeEnv, argv: []string{"/app/enclaveprog", "sleep"}},
		{name: "fault-wasm", env: simWasmEnv, argv: []string{"/app/prog.wasm", "sleep"}},
		{name: "fault-victim-kubelet", env: simNativeEnv, argv: []string{"/app/enclaveprog", "sleep"}},
		{name: "fault-victim-containerd", env: simNativeEnv, argv: []string{"/app/enclaveprog", "sleep"}},
		// The control: what containerd reports for a runc container in the same situation.
		{name: "fault-victim-runc", argv: []string{"sh", "-c", "echo sleeping; exec sleep 600"}},
	}
	for _, fp := range pods {
		rc := "rune"
		if fp.name == "fault-victim-runc" {
			rc = ""
		}
		e.applyObject(podSpec(fp.name, rc, fp.env, fp.argv...))
	}
	for _, fp := range pods {
		p := e.waitRunning("default", fp.name)
		fp.id = containerID(t, p, "main")
		e.waitLogs("default", fp.name, "sleeping")
	}
	if shims := e.shimPids(); len(shims) != len(pods)-1 {
		t.Fatalf("%d rune shims for %d rune pods: %v", len(shims), len(pods)-1, shims)
	}
	// checkAlive: the pod runs the same container, never restarted, and takes an exec.
	checkAlive := func(fp *faultPod, after string) {
		t.Helper()
		p := e.waitRunning("default", fp.name)
		if id := containerID(t, p, "main"); id != fp.id || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("after %s, %s runs container %s (restarts %d), want %s never restarted", after, fp.name, id, p.Status.ContainerStatuses[0].RestartCount, fp.id)
		}
		argv, want := []string{"echo", "alive"}, "alive\n"
		switch fp.env["ENCLAVE_RUNTIME_PATH"] {
		case "builtin:native":
			argv, want = []string{"/app/enclaveprog", "args", "alive"}, "|alive|\n"
		case "builtin:wasm":
			argv, want = []string{"/app/prog.wasm", "args", "alive"}, "|alive|\n"
		}
		if res := e.execOnceServing("default", fp.name, argv...); res.ExitCode != 0 || res.Stdout != want {
			t.Errorf("after %s, kubectl exec into %s: %s, want %q", after, fp.name, res, want)
		}
	}
	// killWorkload SIGKILLs the container's process, as the OOM killer would.
	killWorkload := func(fp *faultPod) {
		t.Helper()
		runtime, root := filepath.Join(e.Bin, "rune"), e.RuneRoot
		if fp.name == "fault-victim-runc" {
			runtime, root = e.Runc, e.RuncRoot
		}
		st, err := clients.QueryState(context.Background(), runtime, filepath.Join(root, Namespace), fp.id)
		if err != nil || st.Pid <= 0 {
			t.Fatalf("rune state of %s: %+v %v", fp.name, st, err)
		}
		if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the workload of %s (pid %d): %v", fp.name, st.Pid, err)
		}
	}
	// terminated waits until a killed workload's pod failed and returns its container's end.
	terminated := func(fp *faultPod) *corev1.ContainerStateTerminated {
		t.Helper()
		term := e.waitTerminated("default", fp.name)
		if term.ContainerID != "containerd://"+fp.id {
			t.Errorf("%s: terminated container %s, want %s", fp.name, term.ContainerID, fp.id)
		}
		e.waitPod("default", fp.name, "Failed", time.Minute, func(p *corev1.Pod) (bool, string) {
			return p.Status.Phase == corev1.PodFailed, podSummary(p)
		})
		return term
	}
	checkKilled := func(fp *faultPod, during string) {
		t.Helper()
		if term := terminated(fp); term.ExitCode != 137 {
			t.Errorf("%s, killed while %s: terminated %+v, want exit 137", fp.name, during, term)
		}
	}
	// The kubelet dies; a workload dies while it is away.
	if err := e.KillKubelet(); err != nil {
		t.Fatal(err)
	}
	killWorkload(pods[3])
	if err := e.StartKubelet(); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitNodeReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, fp := range pods[:3] {
		checkAlive(fp, "kill -9 of the kubelet")
	}
	checkKilled(pods[3], "the kubelet was down")

	// containerd dies; its shims and containers stay; a workload dies while it is away. (The
	// pod that failed above has no shim any more: the kubelet stopped its sandbox.)
	var shims []int
	err := clients.WaitFor(time.Minute, "one rune shim for each of the 4 running rune pods", func() (bool, error) {
		shims = e.shimPids()
		return len(shims) == 4, fmt.Errorf("rune shims %v", shims)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.KillContainerd(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range shims {
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("shim %d died with containerd", pid)
		}
	}
	killWorkload(pods[4])
	killWorkload(pods[5])
	if err := e.StartContainerd(); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitNodeReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, fp := range pods[:3] {
		checkAlive(fp, "kill -9 of containerd")
	}
	// containerd 1.6 asks the shim for the exit status of a task that exited while it was down;
	// containerd 2.4 reports such a container as exited with 255, reason Unknown, for runc too.
	// rune's pod must be reported exactly as the runc pod is.
	control, victim := terminated(pods[5]), terminated(pods[4])
	if victim.ExitCode != control.ExitCode || victim.Reason != control.Reason || victim.ExitCode == 0 {
		t.Errorf("rune pod killed while containerd was down: exit %d (%s); the runc pod: exit %d (%s)",
			victim.ExitCode, victim.Reason, control.ExitCode, control.Reason)
	}
	if e.Generation == Containerd1 && victim.ExitCode != 137 {
		t.Errorf("on containerd 1.6, the rune pod killed while containerd was down: exit %d, want 137", victim.ExitCode)
	}
	t.Logf("%s reports a container killed while it was down as: exit %d, reason %s (runc: exit %d, %s)",
		e.Generation, victim.ExitCode, victim.Reason, control.ExitCode, control.Reason)

	for _, fp := range pods {
		e.deletePod("default", fp.name)
	}
	if ids := e.runeContainers(); len(ids) != 0 {
		t.Errorf("rune still keeps %v after the pods were deleted", ids)
	}
	err = clients.WaitFor(30*time.Second, "the rune shims to exit", func() (bool, error) {
		pids := e.shimPids()
		return len(pids) == 0, fmt.Errorf("rune shims still running: %v", pids)
	})
	if err != nil {
		t.Error(err)
	}
}

// execOnceServing is exec against a kubelet that is (re)starting: until it serves and has
// synchronised its pods, exec fails with one of two errors, which are retried.
func (e *env) execOnceServing(ns, name string, argv ...string) clients.Result {
	e.t.Helper()
	var res clients.Result
	deadline := time.Now().Add(time.Minute)
	for {
		res = e.exec(ns, name, argv...)
		starting := strings.Contains(res.Stderr, "connect: connection refused") || strings.Contains(res.Stderr, "pod does not exist")
		if res.ExitCode == 0 || !starting || time.Now().After(deadline) {
			return res
		}
		time.Sleep(500 * time.Millisecond)
	}
}
