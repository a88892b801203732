package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// envShimBinary overrides the shim under test (default <repo>/bin/containerd-shim-rune-v2).
const envShimBinary = "SHIM_BINARY"

// startEnv checks the prerequisites, starts the CRI containerd (Debian's 1.6, or with
// generation2 containerd 2.x built from the Go module proxy) and removes it when the test
// ends.
func startEnv(t *testing.T, generation2 bool) *Env {
	t.Helper()
	runeBin, tools := clients.Prerequisites(t, "containerd", "ctr", "runc", "busybox", "go")
	var containerd2 string // the directory of containerd 2.x and its runc shim
	if generation2 {
		cache, err := clients.TestCacheDir()
		if err == nil {
			containerd2, err = clients.InstallContainerd2(tools["go"], cache)
		}
		if err != nil {
			clients.Unavailable(t, "containerd %s: %v", clients.Containerd2Version, err)
		}
		tools["containerd"], tools["ctr"] = filepath.Join(containerd2, "containerd"), filepath.Join(containerd2, "ctr")
	}
	shim := os.Getenv(envShimBinary)
	if shim == "" {
		root, err := clients.RepoRoot()
		if err != nil {
			clients.Unavailable(t, "locate the shim: %v", err)
		}
		shim = filepath.Join(root, "bin", "containerd-shim-rune-v2")
	}
	if fi, err := os.Stat(shim); err != nil || fi.Mode().Perm()&0o111 == 0 {
		clients.Unavailable(t, "shim binary %s (run `make build` or set %s): %v", shim, envShimBinary, err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	crictl, err := InstallCrictl(tools["go"], filepath.Join(cache, "inclavare-go-tests"))
	if err != nil {
		clients.Unavailable(t, "crictl: %v", err)
	}
	e, err := Start(Tools{
		Containerd: tools["containerd"], Ctr: tools["ctr"], Runc: tools["runc"], Busybox: tools["busybox"],
		Go: tools["go"], Rune: runeBin, Shim: shim, Crictl: crictl, RuncShimDir: containerd2,
	}, true)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log tail:\n%s", e.LogTail(80))
		}
		if err := e.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// must runs a crictl command that must succeed.
func must(t *testing.T, e *Env, args ...string) string {
	t.Helper()
	out, err := e.MustRun(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeJSON writes v as JSON into the env's directory and returns the path.
func writeJSON(t *testing.T, e *Env, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.Dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// podConfig is a host-network pod sandbox config for crictl runp.
func podConfig(e *Env, name string) map[string]any {
	return map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"log_directory": filepath.Join(e.PodLogs, name),
		"linux": map[string]any{"security_context": map[string]any{
			"namespace_options": map[string]any{"network": 2}, // NODE: no CNI
		}},
	}
}

func containerConfig(name string, env map[string]string, cmd ...string) map[string]any {
	var envs []map[string]string
	for k, v := range env {
		envs = append(envs, map[string]string{"key": k, "value": v})
	}
	return map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": WorkloadImage},
		"command":  cmd,
		"envs":     envs,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
}

var enclaveEnv = map[string]string{"ENCLAVE_TYPE": "sim", "ENCLAVE_RUNTIME_PATH": "builtin:wasm"}

// containerInfo is the part of `crictl inspect` the tests check.
type containerInfo struct {
	Status struct {
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
	} `json:"status"`
	Info struct {
		Pid         int    `json:"pid"`
		RuntimeType string `json:"runtimeType"`
	} `json:"info"`
}

func inspect(t *testing.T, e *Env, id string) containerInfo {
	t.Helper()
	var ci containerInfo
	out := must(t, e, "inspect", id)
	if err := json.Unmarshal([]byte(out), &ci); err != nil {
		t.Fatalf("decode crictl inspect %s: %v\n%s", id, err, out)
	}
	return ci
}

func waitState(t *testing.T, e *Env, id, want string) containerInfo {
	t.Helper()
	var ci containerInfo
	if err := clients.WaitFor(60*time.Second, fmt.Sprintf("container %s %s", id, want), func() (bool, error) {
		ci = inspect(t, e, id)
		return ci.Status.State == want, fmt.Errorf("last state %s", ci.Status.State)
	}); err != nil {
		t.Fatal(err)
	}
	return ci
}

func waitLogs(t *testing.T, e *Env, id, want string) {
	t.Helper()
	var last string
	if err := clients.WaitFor(60*time.Second, fmt.Sprintf("%q in the logs of %s", want, id), func() (bool, error) {
		last = must(t, e, "logs", id)
		return strings.Contains(last, want), nil
	}); err != nil {
		t.Fatalf("%v; logs: %q", err, last)
	}
}

// runContainer creates and starts a container in pod and returns its ID.
func runContainer(t *testing.T, e *Env, pod, podJSON string, cfg map[string]any) string {
	t.Helper()
	name := cfg["metadata"].(map[string]any)["name"].(string)
	id := must(t, e, "create", "--no-pull", pod, writeJSON(t, e, name+".json", cfg), podJSON)
	must(t, e, "start", id)
	return id
}

// shimOf is the shim serving a container: the parent of its init (the shim is the
// subreaper of its containers), by executable path.
func shimOf(t *testing.T, pid int) (int, string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read stat of %d: %v", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start after the last ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 2 {
		t.Fatalf("short stat of %d: %q", pid, data)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("parent of %d: %v", pid, err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil {
		t.Fatalf("executable of shim %d: %v", ppid, err)
	}
	return ppid, exe
}

func processGone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}

// execTerminated is crictl's report of an exec'd command's non-zero exit (crictl itself
// then exits 1).
var execTerminated = regexp.MustCompile(`command terminated with exit code (\d+)`)

// execCheck runs `crictl exec` and checks the command's output and exit code.
func execCheck(t *testing.T, e *Env, id string, cmd []string, want string, wantExit int) {
	t.Helper()
	res, err := e.Run(context.Background(), append([]string{"exec", id}, cmd...)...)
	if err != nil {
		t.Fatal(err)
	}
	code := res.ExitCode
	if m := execTerminated.FindStringSubmatch(res.Stderr); m != nil && code == 1 {
		code, _ = strconv.Atoi(m[1])
	}
	if code != wantExit || res.Stdout != want {
		t.Fatalf("crictl exec %v: %s; want exit %d, stdout %q", cmd, res, wantExit, want)
	}
}

// TestCRI runs a rune pod (an enclave container, an exec target in an enclave, an
// ordinary container) and a runc pod through crictl.
// TestCRI runs pods through the CRI plugin of Debian's containerd 1.6.
func TestCRI(t *testing.T) { criScenarios(t, startEnv(t, false)) }

// TestCRIContainerd2 runs the same pods through containerd 2.x's CRI, which also asks the
// shim for rune's features (`containerd-shim-rune-v2 -info`).
func TestCRIContainerd2(t *testing.T) {
	e := startEnv(t, true)
	t.Run("RuntimeFeatures", func(t *testing.T) {
		// What containerd reports per handler derives from the runtime's OCI features, which
		// the shim's -info passes on: user namespaces need the "user" namespace and idmapped
		// mounts. rune has both, but the shim cannot mount a user-namespaced pod's rootfs with
		// idmapped layers, so it withholds idmap and containerd must report no user namespaces
		// for the rune handlers (as for runc 1.1's): a pod asking for one is refused up front
		// instead of failing at start with "mount rootfs: invalid argument" (critest's
		// UserNamespaces NamespaceMode_POD spec, tests/critest).
		var f struct {
			Linux struct {
				Namespaces      []string `json:"namespaces"`
				MountExtensions struct {
					IDMap struct {
						Enabled bool `json:"enabled"`
					} `json:"idmap"`
				} `json:"mountExtensions"`
			} `json:"linux"`
		}
		res, err := clients.Run(context.Background(), clientTimeout, nil, e.Rune, "features")
		if err == nil && res.ExitCode == 0 {
			err = json.Unmarshal([]byte(res.Stdout), &f)
		}
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("rune features: %v %s", err, res)
		}
		if !slices.Contains(f.Linux.Namespaces, "user") || !f.Linux.MountExtensions.IDMap.Enabled {
			t.Fatalf("rune features on this machine lack user namespaces or idmapped mounts: %s", res.Stdout)
		}
		var info struct {
			RuntimeHandlers []struct {
				Name     string `json:"name"`
				Features struct {
					UserNamespaces          bool `json:"user_namespaces"`
					RecursiveReadOnlyMounts bool `json:"recursive_read_only_mounts"`
				} `json:"features"`
			} `json:"runtimeHandlers"`
		}
		out := must(t, e, "info")
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("decode crictl info: %v", err)
		}
		seen := 0
		for _, h := range info.RuntimeHandlers {
			if h.Name != HandlerRune && h.Name != HandlerSimNative {
				continue
			}
			seen++
			// The features did reach containerd: rune's recursive read-only mounts did.
			if h.Features.UserNamespaces || !h.Features.RecursiveReadOnlyMounts {
				t.Fatalf("handler %s: user_namespaces %v, recursive_read_only_mounts %v; want false, true (rune's features through the shim's -info)\n%s",
					h.Name, h.Features.UserNamespaces, h.Features.RecursiveReadOnlyMounts, out)
			}
		}
		if seen != 2 {
			t.Fatalf("handlers %s and %s not both in crictl info:\n%s", HandlerRune, HandlerSimNative, out)
		}
	})
	criScenarios(t, e)
}

func criScenarios(t *testing.T, e *Env) {
	runeState := func(id string) string { return filepath.Join(e.RuneRoot, Namespace, id) }

	t.Run("RunePod", func(t *testing.T) {
		podJSON := writeJSON(t, e, "rune-pod.json", podConfig(e, "rune-pod"))
		pod := must(t, e, "runp", "--runtime", HandlerRune, podJSON)
		var sandbox struct {
			Status struct {
				State          string `json:"state"`
				RuntimeHandler string `json:"runtimeHandler"` // CRI's field, filled by containerd 2.x
			} `json:"status"`
			Info struct {
				Pid            int    `json:"pid"`
				RuntimeHandler string `json:"runtimeHandler"` // containerd 1.6's verbose info
				RuntimeType    string `json:"runtimeType"`
			} `json:"info"`
		}
		out := must(t, e, "inspectp", pod)
		if err := json.Unmarshal([]byte(out), &sandbox); err != nil {
			t.Fatalf("decode crictl inspectp: %v\n%s", err, out)
		}
		handler := sandbox.Status.RuntimeHandler
		if handler == "" {
			handler = sandbox.Info.RuntimeHandler
		}
		if sandbox.Status.State != "SANDBOX_READY" || handler != HandlerRune || sandbox.Info.RuntimeType != "io.containerd.rune.v2" {
			t.Fatalf("pod sandbox: state %s, handler %q, runtime type %q; want SANDBOX_READY under rune / io.containerd.rune.v2",
				sandbox.Status.State, handler, sandbox.Info.RuntimeType)
		}
		// The sandbox (pause) container runs under rune: rune has its state, and its
		// parent is the rune shim.
		st, err := clients.QueryState(context.Background(), e.Rune, filepath.Join(e.RuneRoot, Namespace), pod)
		if err != nil || st.Status != "running" || st.Pid != sandbox.Info.Pid {
			t.Fatalf("rune state of the sandbox: %+v, %v; want running with pid %d", st, err, sandbox.Info.Pid)
		}
		shimPid, shimExe := shimOf(t, sandbox.Info.Pid)
		if shimExe != e.Shim {
			t.Fatalf("sandbox's shim is %s, want %s", shimExe, e.Shim)
		}

		t.Run("enclave hello exit code and logs", func(t *testing.T) {
			id := runContainer(t, e, pod, podJSON, containerConfig("hello", enclaveEnv, "/app/hello.wasm", "7"))
			ci := waitState(t, e, id, "CONTAINER_EXITED")
			if ci.Status.ExitCode != 7 || ci.Info.RuntimeType != "io.containerd.rune.v2" {
				t.Fatalf("exited enclave container: exit code %d, runtime type %q; want 7 under io.containerd.rune.v2", ci.Status.ExitCode, ci.Info.RuntimeType)
			}
			waitLogs(t, e, id, "Hello from an enclave container!")
			waitLogs(t, e, id, `args=["/app/hello.wasm" "7"]`)
			must(t, e, "rm", id)
			if _, err := os.Stat(runeState(id)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("rune state of %s after crictl rm: %v, want none", id, err)
			}
		})

		t.Run("enclave settings hidden from the workload", func(t *testing.T) {
			id := runContainer(t, e, pod, podJSON, containerConfig("env", enclaveEnv, "/app/prog.wasm", "env", "ENCLAVE_TYPE"))
			if ci := waitState(t, e, id, "CONTAINER_EXITED"); ci.Status.ExitCode != 0 {
				t.Fatalf("exit code %d, want 0", ci.Status.ExitCode)
			}
			if out := must(t, e, "logs", id); out != "unset" {
				t.Fatalf("ENCLAVE_TYPE as the workload sees it: %q, want \"unset\"", out)
			}
			must(t, e, "rm", id)
		})

		// rune refuses bad enclave settings when CRI creates the task (at start); the
		// reason reaches the Kubernetes client and nothing is left in rune's root.
		// What the device plugin adds for an EPC allocation (enclave.runtime.args=memory=<n>M)
		// reaches rune as an annotation through the handler's container_annotations, beside the
		// settings given as annotations instead of env.
		// startFails creates a container from config in the pod and checks that its start fails
		// with an error holding every one of want (crictl quotes the error, escaping its quotes:
		// look for words) and that rune keeps no state of it.
		startFails := func(t *testing.T, name string, config map[string]any, want ...string) {
			t.Helper()
			id := must(t, e, "create", "--no-pull", pod, writeJSON(t, e, name+".json", config), podJSON)
			res, err := e.Run(context.Background(), "start", id)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range want {
				if res.ExitCode == 0 || !strings.Contains(res.Stderr, w) {
					t.Fatalf("crictl start of %s: %s; want a failure naming %q", name, res, want)
				}
			}
			if _, err := os.Stat(runeState(id)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("rune state of %s after a failed start: %v, want none", id, err)
			}
			must(t, e, "rm", id)
		}
		t.Run("enclave settings from annotations", func(t *testing.T) {
			annotated := func(name, args string) map[string]any {
				c := containerConfig(name, nil, "/app/hello.wasm", "3")
				c["annotations"] = map[string]string{"enclave.type": "sim", "enclave.runtime.path": "builtin:wasm", "enclave.runtime.args": args}
				return c
			}
			id := runContainer(t, e, pod, podJSON, annotated("annotated", "memory=64M"))
			if ci := waitState(t, e, id, "CONTAINER_EXITED"); ci.Status.ExitCode != 3 {
				t.Fatalf("enclave container from annotations: exit code %d, want 3", ci.Status.ExitCode)
			}
			waitLogs(t, e, id, "Hello from an enclave container!")
			must(t, e, "rm", id)

			// A limit the runtime cannot honour fails the start, naming it: the annotation arrived.
			startFails(t, "tiny", annotated("tiny", "memory=1K"), "memory size", "1K")
		})
		t.Run("enclave bad settings fail start", func(t *testing.T) {
			startFails(t, "bogus", containerConfig("bogus", map[string]string{"ENCLAVE_TYPE": "bogus", "ENCLAVE_RUNTIME_PATH": "builtin:wasm"}, "/app/hello.wasm"),
				"unknown enclave type", "bogus")
		})

		t.Run("enclave key broker", func(t *testing.T) { testKBS(t, e, pod, podJSON) })

		t.Run("enclave exec stop rm", func(t *testing.T) {
			id := runContainer(t, e, pod, podJSON, containerConfig("sleeper", enclaveEnv, "/app/prog.wasm", "sleep"))
			ci := waitState(t, e, id, "CONTAINER_RUNNING")
			waitLogs(t, e, id, "sleeping")
			if st, err := clients.QueryState(context.Background(), e.Rune, filepath.Join(e.RuneRoot, Namespace), id); err != nil || st.Status != "running" || st.Pid != ci.Info.Pid {
				t.Fatalf("rune state: %+v, %v; want running with pid %d", st, err, ci.Info.Pid)
			}
			if p, exe := shimOf(t, ci.Info.Pid); p != shimPid || exe != e.Shim {
				t.Fatalf("container's shim: pid %d (%s), want the pod's shim %d (%s)", p, exe, shimPid, e.Shim)
			}
			tests := []struct {
				name     string
				cmd      []string
				want     string
				wantExit int
			}{
				{"args", []string{"/app/prog.wasm", "args", "a b", "ü"}, "|a b|ü|\n", 0},
				{"exit code", []string{"/app/prog.wasm", "exit", "6"}, "exit 6\n", 6},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					execCheck(t, e, id, tc.cmd, tc.want, tc.wantExit)
				})
			}
			must(t, e, "stop", "--timeout", "10", id)
			// SIGTERM cancels the wasm workload: 128+15.
			if ci := waitState(t, e, id, "CONTAINER_EXITED"); ci.Status.ExitCode != 143 {
				t.Fatalf("exit code after crictl stop: %d, want 143", ci.Status.ExitCode)
			}
			must(t, e, "rm", id)
			if _, err := os.Stat(runeState(id)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("rune state of %s after crictl rm: %v, want none", id, err)
			}
		})

		t.Run("ordinary exec logs stop rm", func(t *testing.T) {
			id := runContainer(t, e, pod, podJSON, containerConfig("busybox", nil, "sh", "-c", "echo started; exec sleep 600"))
			ci := waitState(t, e, id, "CONTAINER_RUNNING")
			waitLogs(t, e, id, "started")
			if p, exe := shimOf(t, ci.Info.Pid); p != shimPid || exe != e.Shim {
				t.Fatalf("container's shim: pid %d (%s), want the pod's shim %d (%s)", p, exe, shimPid, e.Shim)
			}
			tests := []struct {
				name     string
				cmd      []string
				want     string
				wantExit int
			}{
				{"output", []string{"echo", "exec works"}, "exec works\n", 0},
				{"exit code", []string{"sh", "-c", "echo before; exit 5"}, "before\n", 5},
				// Pods share one PID namespace (CRI's default): PID 1 is the pause process.
				{"pod pid namespace", []string{"cat", "/proc/1/cmdline"}, "/pause\x00", 0},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					execCheck(t, e, id, tc.cmd, tc.want, tc.wantExit)
				})
			}
			// sleep is not PID 1 of the pod's PID namespace, so SIGTERM kills it.
			must(t, e, "stop", "--timeout", "10", id)
			if ci := waitState(t, e, id, "CONTAINER_EXITED"); ci.Status.ExitCode != 143 {
				t.Fatalf("exit code after crictl stop: %d, want 143", ci.Status.ExitCode)
			}
			must(t, e, "rm", id)
			if _, err := os.Stat(runeState(id)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("rune state of %s after crictl rm: %v, want none", id, err)
			}
		})

		must(t, e, "stopp", pod)
		must(t, e, "rmp", pod)
		if out := must(t, e, "pods", "-q"); strings.Contains(out, pod) {
			t.Fatalf("pod %s still listed after crictl rmp: %q", pod, out)
		}
		if _, err := os.Stat(runeState(pod)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("rune state of the sandbox after crictl rmp: %v, want none", err)
		}
		// The pod's shim exits with its last container.
		if err := clients.WaitFor(30*time.Second, fmt.Sprintf("shim %d to exit", shimPid), func() (bool, error) {
			return processGone(shimPid), nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	// deploy/'s rune-sim-native handler (deploy/enclave-runtimeclass.md): nothing in the pod
	// asks for an enclave, yet every container of it is an enclave container (sim,
	// builtin:native) through the handler's base runtime spec, and its sandbox is not.
	t.Run("SimNativePod", func(t *testing.T) {
		podJSON := writeJSON(t, e, "sim-native-pod.json", podConfig(e, "sim-native-pod"))
		pod := must(t, e, "runp", "--runtime", HandlerSimNative, podJSON)
		attest := func(id string) (clients.Result, error) {
			return clients.Run(context.Background(), clientTimeout, nil, e.Rune, "--root", filepath.Join(e.RuneRoot, Namespace), "attest", id)
		}
		// containerd builds the sandbox's spec without the base runtime spec.
		if res, err := attest(pod); err != nil || res.ExitCode == 0 || !strings.Contains(res.Stderr, "not an enclave container") {
			t.Fatalf("rune attest of the sandbox: %v %s; want it refused as not an enclave container", err, res)
		}
		id := runContainer(t, e, pod, podJSON, containerConfig("native", nil, "sh", "-c", "echo started; exec sleep 600"))
		ci := waitState(t, e, id, "CONTAINER_RUNNING")
		waitLogs(t, e, id, "started")
		// PID 1 of the container is the runelet, running the entrypoint in the enclave runtime.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ci.Info.Pid))
		if err != nil || !strings.Contains(string(cmdline), "init-runelet") {
			t.Fatalf("command line of the container's init %d: %q, %v; want the runelet's", ci.Info.Pid, cmdline, err)
		}
		res, err := attest(id)
		var evidence struct{ TEE, Runtime, Measurement string }
		if err == nil && res.ExitCode == 0 {
			err = json.Unmarshal([]byte(res.Stdout), &evidence)
		}
		if err != nil || res.ExitCode != 0 || evidence.TEE != "sim" || evidence.Runtime != "builtin:native" || evidence.Measurement == "" {
			t.Fatalf("rune attest of the container: %v %s; want sim evidence from builtin:native with a measurement", err, res)
		}
		execCheck(t, e, id, []string{"sh", "-c", "echo in enclave; exit 4"}, "in enclave\n", 4)
		// The runelet forwards SIGTERM to the workload, which it kills: 128+15.
		must(t, e, "stop", "--timeout", "10", id)
		if ci := waitState(t, e, id, "CONTAINER_EXITED"); ci.Status.ExitCode != 143 {
			t.Fatalf("exit code after crictl stop: %d, want 143", ci.Status.ExitCode)
		}
		must(t, e, "rm", id)
		must(t, e, "stopp", pod)
		must(t, e, "rmp", pod)
		if _, err := os.Stat(runeState(id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("rune state of %s after crictl rm: %v, want none", id, err)
		}
	})

	// The default handler still works beside rune, and does not use it.
	t.Run("RuncPod", func(t *testing.T) {
		podJSON := writeJSON(t, e, "runc-pod.json", podConfig(e, "runc-pod"))
		pod := must(t, e, "runp", "--runtime", HandlerRunc, podJSON)
		id := runContainer(t, e, pod, podJSON, containerConfig("runc-busybox", nil, "sh", "-c", "echo from runc; sleep 600"))
		ci := waitState(t, e, id, "CONTAINER_RUNNING")
		if _, exe := shimOf(t, ci.Info.Pid); filepath.Base(exe) != "containerd-shim-runc-v2" {
			t.Fatalf("runc pod's container is served by %s, want containerd-shim-runc-v2", exe)
		}
		if _, err := os.Stat(filepath.Join(e.RuncRoot, Namespace, id)); err != nil {
			t.Fatalf("runc state of %s: %v", id, err)
		}
		if _, err := os.Stat(runeState(id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("rune state for a runc container: %v, want none", err)
		}
		waitLogs(t, e, id, "from runc")
		must(t, e, "stop", "--timeout", "1", id)
		waitState(t, e, id, "CONTAINER_EXITED")
		must(t, e, "rm", id)
		must(t, e, "stopp", pod)
		must(t, e, "rmp", pod)
	})
}
