package shim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// ctrDeleteExit matches containerd 1.6's report of a non-zero exit on `ctr task delete`.
var ctrDeleteExit = regexp.MustCompile(`exit with non-zero exit code (\d+)`)

// TestShim runs every scenario against one private containerd 1.x (task API v2), in order;
// the containerd restart comes last.
func TestShim(t *testing.T) { scenarios(t, startSuite(t)) }

// TestShimContainerd2 runs the same scenarios against containerd 2.x built from the Go
// module proxy (CONTAINERD2_BINARY and CTR2_BINARY name another build), which starts the
// shim with bootstrap parameters and talks task API v3 to it.
func TestShimContainerd2(t *testing.T) {
	containerd, ctr := os.Getenv(envContainerd2), os.Getenv(envCtr2)
	if containerd == "" || ctr == "" {
		_, tools := clients.Prerequisites(t, "go")
		cache, err := clients.TestCacheDir()
		var dir string
		if err == nil {
			dir, err = clients.InstallContainerd2(tools["go"], cache)
		}
		containerd, ctr = filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr")
		if err != nil {
			clients.Unavailable(t, "containerd %s: %v", clients.Containerd2Version, err)
		}
	}
	s := startSuiteOn(t, containerd, ctr)
	s.taskAPI = 3
	scenarios(t, s)
}

func scenarios(t *testing.T, s *suite) {

	t.Run("RunOutputAndExitCode", func(t *testing.T) {
		tests := []struct {
			name     string
			flags    []string
			stdin    string
			cmd      []string
			want     string
			wantExit int
		}{
			{name: "echo", cmd: []string{"echo", "hello from the rune shim"}, want: "hello from the rune shim\n"},
			{name: "pid 1", cmd: []string{"sh", "-c", "echo $$"}, want: "1\n"},
			{name: "env", flags: []string{"--env", "GREETING=a  b"}, cmd: []string{"sh", "-c", `echo "[$GREETING]"`}, want: "[a  b]\n"},
			{name: "exit 3", cmd: []string{"sh", "-c", "echo bye; exit 3"}, want: "bye\n", wantExit: 3},
			{name: "exit 255", cmd: []string{"sh", "-c", "exit 255"}, wantExit: 255},
			{name: "false", cmd: []string{"false"}, wantExit: 1},
			{name: "stderr kept apart", cmd: []string{"sh", "-c", "echo out; echo err >&2"}, want: "out\n"},
			// ctr does not close the task's stdin at EOF, so the reader stops by itself.
			{name: "stdin", stdin: "line one\nline two\n", cmd: []string{"head", "-n", "2"}, want: "line one\nline two\n"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("run-%d", i)
				var stdin []byte
				if tc.stdin != "" {
					stdin = []byte(tc.stdin)
				}
				res, err := s.Exec(context.Background(), stdin, s.runArgs(append([]string{"--rm"}, tc.flags...), id, tc.cmd...)...)
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != tc.wantExit || res.Stdout != tc.want {
					t.Fatalf("ctr run %v: got %s, want exit %d and stdout %q", tc.cmd, res, tc.wantExit, tc.want)
				}
				if _, ok := s.Task(t, id); ok {
					t.Fatalf("task %s still listed after ctr run --rm", id)
				}
			})
		}
	})

	t.Run("RunsUnderRune", func(t *testing.T) {
		const id = "under-rune"
		s.startDetached(t, nil, id, "sleep", "600")
		tk := s.WaitTaskStatus(t, id, "RUNNING")
		opts := readShimOptions(t, s.bundle(id))
		if opts.BinaryName != s.rune || opts.Root != s.runeRoot {
			t.Fatalf("recorded options %+v, want binary %s and root %s (from the shim configuration)", opts, s.rune, s.runeRoot)
		}
		if s.taskAPI == 3 {
			// containerd 2.x records what the shim answered at start.
			var b struct {
				Version  int    `json:"version"`
				Protocol string `json:"protocol"`
			}
			data, err := os.ReadFile(filepath.Join(s.bundle(id), "bootstrap.json"))
			if err == nil {
				err = json.Unmarshal(data, &b)
			}
			if err != nil || b.Version != 3 || b.Protocol != "ttrpc" {
				t.Fatalf("bootstrap.json %q (%v): want task API version 3 over ttrpc", data, err)
			}
		}
		st, err := clients.QueryState(context.Background(), s.rune, s.runeStateRoot(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.ID != id || st.Pid != tk.Pid || st.Status != "running" || st.Bundle != s.bundle(id) {
			t.Fatalf("rune state = %+v, want id %s, pid %d, running, bundle %s", st, id, tk.Pid, s.bundle(id))
		}
		s.MustCtr(t, "task", "kill", "-s", "SIGKILL", id)
		s.WaitTaskStatus(t, id, "STOPPED")
		res := s.CtrCmd(t, "task", "delete", id)
		if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != "137" {
			t.Fatalf("ctr task delete after SIGKILL: got %s, want success reporting exit code 137", res)
		}
		if _, err := os.Stat(filepath.Join(s.runeStateRoot(), id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("rune state of %s after task delete: %v, want none", id, err)
		}
	})

	t.Run("ExecAndMetrics", func(t *testing.T) {
		const id = "exec-target"
		s.startDetached(t, nil, id, "sleep", "600")
		s.WaitTaskStatus(t, id, "RUNNING")
		tests := []struct {
			name     string
			cmd      []string
			want     string
			wantExit int
		}{
			{name: "output", cmd: []string{"echo", "exec works"}, want: "exec works\n"},
			{name: "exit code", cmd: []string{"sh", "-c", "echo before; exit 5"}, want: "before\n", wantExit: 5},
			{name: "sees init", cmd: []string{"cat", "/proc/1/cmdline"}, want: "sleep\x00600\x00"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				res := s.CtrCmd(t, append([]string{"task", "exec", "--exec-id", fmt.Sprintf("e%d", i), "--fifo-dir", s.fifoDir, id}, tc.cmd...)...)
				if res.ExitCode != tc.wantExit || res.Stdout != tc.want {
					t.Fatalf("ctr task exec %v: got %s, want exit %d and stdout %q", tc.cmd, res, tc.wantExit, tc.want)
				}
			})
		}
		t.Run("metrics", func(t *testing.T) {
			var m struct {
				Pids *struct {
					Current uint64 `json:"current"`
				} `json:"pids"`
				Memory *struct {
					Usage *struct {
						Usage uint64 `json:"usage"`
					} `json:"usage"`
				} `json:"memory"`
			}
			out := s.MustCtr(t, "task", "metrics", "--format", "json", id)
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("decode ctr task metrics: %v\n%s", err, out)
			}
			if m.Pids == nil || m.Pids.Current < 1 || m.Memory == nil || m.Memory.Usage == nil || m.Memory.Usage.Usage == 0 {
				t.Fatalf("ctr task metrics: want pids.current >= 1 and a memory usage, got %s", out)
			}
		})
	})

	t.Run("PauseResume", func(t *testing.T) {
		const id = "pause-target"
		s.startDetached(t, nil, id, "sleep", "600")
		s.WaitTaskStatus(t, id, "RUNNING")
		s.MustCtr(t, "task", "pause", id)
		if tk, _ := s.Task(t, id); tk.Status != "PAUSED" {
			t.Fatalf("task status after pause = %q, want PAUSED", tk.Status)
		}
		if st, err := clients.QueryState(context.Background(), s.rune, s.runeStateRoot(), id); err != nil || st.Status != "paused" {
			t.Fatalf("rune state after pause = %+v, %v; want paused", st, err)
		}
		s.MustCtr(t, "task", "resume", id)
		if tk, _ := s.Task(t, id); tk.Status != "RUNNING" {
			t.Fatalf("task status after resume = %q, want RUNNING", tk.Status)
		}
		res := s.CtrCmd(t, "task", "exec", "--exec-id", "after-resume", "--fifo-dir", s.fifoDir, id, "echo", "awake")
		if res.ExitCode != 0 || res.Stdout != "awake\n" {
			t.Fatalf("exec after resume: %s", res)
		}
	})

	t.Run("Enclave", func(t *testing.T) {
		t.Run("hello exit codes", func(t *testing.T) {
			for i, code := range []int{7, 0, 42} {
				id := fmt.Sprintf("enclave-hello-%d", i)
				res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, enclaveEnv...), id, "/app/hello.wasm", fmt.Sprint(code))...)
				want := fmt.Sprintf(`args=["/app/hello.wasm" "%d"]`, code)
				if res.ExitCode != code || !strings.Contains(res.Stdout, "Hello from an enclave container!") || !strings.Contains(res.Stdout, want) {
					t.Fatalf("ctr run hello.wasm %d: got %s, want exit %d and a greeting with %s", code, res, code, want)
				}
			}
		})
		t.Run("settings hidden from the workload", func(t *testing.T) {
			res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, enclaveEnv...), "enclave-env", "/app/prog.wasm", "env", "ENCLAVE_TYPE")...)
			if res.ExitCode != 0 || res.Stdout != "unset\n" {
				t.Fatalf("ENCLAVE_TYPE as the workload sees it: %s, want \"unset\"", res)
			}
		})
		// rune refuses bad enclave settings at create; the reason reaches the client.
		t.Run("bad settings fail create", func(t *testing.T) {
			tests := []struct {
				name string
				env  []string
				want string
			}{
				{"unknown type", []string{"--env", "ENCLAVE_TYPE=bogus", "--env", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, `unknown enclave type "bogus"`},
				{"hardware absent", []string{"--env", "ENCLAVE_TYPE=intelSgx", "--env", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, "needs TEE hardware"},
			}
			for i, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					id := fmt.Sprintf("enclave-bad-%d", i)
					t.Cleanup(func() { s.Remove(t, id) })
					res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, tc.env...), id, "/app/hello.wasm")...)
					if res.ExitCode == 0 || !strings.Contains(res.Stderr, tc.want) {
						t.Fatalf("ctr run with %v: %s, want a failed create naming %q", tc.env, res, tc.want)
					}
					if _, err := os.Stat(filepath.Join(s.runeStateRoot(), id)); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("rune state for %s after a failed create: %v", id, err)
					}
				})
			}
		})
		t.Run("exec attest kill delete", func(t *testing.T) {
			const id = "enclave-sleeper"
			logPath := s.startDetached(t, enclaveEnv, id, "/app/prog.wasm", "sleep")
			clients.WaitFileLine(t, logPath, "sleeping")
			res := s.CtrCmd(t, "task", "exec", "--exec-id", "args", "--fifo-dir", s.fifoDir, id, "/app/prog.wasm", "args", "a b", "", "ü")
			if res.ExitCode != 0 || res.Stdout != "|a b||ü|\n" {
				t.Fatalf("ctr task exec in the enclave: %s", res)
			}
			if res := s.CtrCmd(t, "task", "exec", "--exec-id", "exit", "--fifo-dir", s.fifoDir, id, "/app/prog.wasm", "exit", "6"); res.ExitCode != 6 {
				t.Fatalf("exit status of an exec in the enclave: %s, want 6", res)
			}
			att, err := clients.Run(context.Background(), clientTimeout, nil, s.rune, "--root", s.runeStateRoot(), "attest", id)
			if err != nil || att.ExitCode != 0 {
				t.Fatalf("rune attest: %v %s", err, att)
			}
			var ev struct {
				TEE      string `json:"tee"`
				Evidence []byte `json:"evidence"`
			}
			if err := json.Unmarshal([]byte(att.Stdout), &ev); err != nil || ev.TEE != "sim" || len(ev.Evidence) == 0 {
				t.Fatalf("rune attest output: %v %s; want sim evidence", err, att.Stdout)
			}
			s.MustCtr(t, "task", "kill", "-s", "SIGTERM", id)
			s.WaitTaskStatus(t, id, "STOPPED")
			// SIGTERM cancels the wasm workload: 128+15.
			res = s.CtrCmd(t, "task", "delete", id)
			if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != "143" {
				t.Fatalf("ctr task delete: got %s, want success reporting exit code 143", res)
			}
			s.MustCtr(t, "container", "rm", id)
			if out := s.MustCtr(t, "container", "ls", "-q"); clients.HasLine(out, id) {
				t.Fatalf("container %s still listed after ctr container rm", id)
			}
		})
	})

	t.Run("Events", func(t *testing.T) {
		ev, err := clients.StartBackground(2*time.Minute, s.ctr, "-a", s.sock, "events")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ev.Stop)
		// ctr events prints nothing until an event arrives: run a task until its create
		// shows up, so the subscription is known to be in place.
		const id = "events-target"
		res := s.CtrCmd(t, s.runArgs([]string{"--rm"}, id, "sh", "-c", "exit 4")...)
		if res.ExitCode != 4 {
			t.Fatalf("ctr run: %s, want exit 4", res)
		}
		for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
			err := clients.WaitFor(30*time.Second, topic+" event", func() (bool, error) {
				return eventLine(ev.Stdout(), topic, id) != "", nil
			})
			if err != nil {
				t.Fatalf("%v; ctr events output:\n%s", err, ev.Stdout())
			}
		}
		if line := eventLine(ev.Stdout(), "/tasks/exit", id); !strings.Contains(line, `"exit_status":4`) {
			t.Fatalf("exit event %q does not carry exit status 4", line)
		}
		// Order: create, start, exit, delete.
		out := ev.Stdout()
		last := -1
		for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
			i := strings.Index(out, eventLine(out, topic, id))
			if i < last {
				t.Fatalf("event %s out of order in:\n%s", topic, out)
			}
			last = i
		}
	})

	t.Run("OOM", func(t *testing.T) {
		ev, err := clients.StartBackground(2*time.Minute, s.ctr, "-a", s.sock, "events")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ev.Stop)
		const id = "oom-target"
		t.Cleanup(func() { s.Remove(t, id) })
		// The shell doubles a string until the 32 MiB limit is hit.
		res := s.CtrCmd(t, s.runArgs([]string{"--rm", "--memory-limit", "33554432"}, id, "sh", "-c", "x=0123456789; while :; do x=$x$x; done")...)
		if res.ExitCode != 137 {
			t.Fatalf("ctr run of a memory hog: %s, want 137 (OOM-killed)", res)
		}
		err = clients.WaitFor(30*time.Second, "/tasks/oom event", func() (bool, error) {
			return eventLine(ev.Stdout(), "/tasks/oom", id) != "", nil
		})
		if err != nil {
			t.Fatalf("%v; ctr events output:\n%s", err, ev.Stdout())
		}
	})

	// Clients must see the exits of processes exec'd into a container before init's. With
	// its own PID namespace they die with init; in a shared one the shim kills them when
	// init exits (rune kill --all), and init's exit is held until theirs are published.
	t.Run("InitExitAfterExecExits", func(t *testing.T) {
		const host = "pidns-host"
		s.startDetached(t, nil, host, "sleep", "600")
		hostTask := s.WaitTaskStatus(t, host, "RUNNING")
		tests := []struct {
			name  string
			flags []string
		}{
			{"own pid namespace", nil},
			{"shared pid namespace", []string{"--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", hostTask.Pid)}},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("exit-order-%d", i)
				s.startDetached(t, tc.flags, id, "sleep", "600")
				s.WaitTaskStatus(t, id, "RUNNING")
				ev, err := clients.StartBackground(2*time.Minute, s.ctr, "-a", s.sock, "events")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(ev.Stop)
				s.MustCtr(t, "task", "exec", "--detach", "--exec-id", "bystander", "--fifo-dir", s.fifoDir, id, "sleep", "600")
				if err := clients.WaitFor(30*time.Second, "exec-started event", func() (bool, error) {
					return eventLine(ev.Stdout(), "/tasks/exec-started", id) != "", nil
				}); err != nil {
					t.Fatalf("%v; events:\n%s", err, ev.Stdout())
				}
				s.MustCtr(t, "task", "kill", "-s", "SIGKILL", id)
				s.WaitTaskStatus(t, id, "STOPPED")
				var execExit, initExit string
				err = clients.WaitFor(30*time.Second, "both exit events", func() (bool, error) {
					out := ev.Stdout()
					execExit, initExit = exitEventLine(out, id, "bystander"), exitEventLine(out, id, id)
					return execExit != "" && initExit != "", nil
				})
				if err != nil {
					t.Fatalf("%v; events:\n%s", err, ev.Stdout())
				}
				if out := ev.Stdout(); strings.Index(out, execExit) > strings.Index(out, initExit) {
					t.Fatalf("init's exit was published before the exec'd process's:\n%s", out)
				}
				res := s.CtrCmd(t, "task", "delete", id)
				if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != "137" {
					t.Fatalf("ctr task delete: got %s, want exit code 137", res)
				}
			})
		}
	})

	t.Run("Terminal", func(t *testing.T) {
		script, err := clients.LookBinary("script")
		if err != nil {
			clients.Unavailable(t, "script (util-linux) runs ctr on a terminal: %v", err)
		}
		tests := []struct {
			name  string
			flags []string
			cmd   string
			want  []string
			exit  int
		}{
			{name: "ordinary", cmd: "tty; echo on-a-tty; exit 9", want: []string{"/dev/pts/0", "on-a-tty"}, exit: 9},
			{name: "enclave", flags: enclaveEnv, cmd: "", want: []string{"Hello from an enclave container!"}, exit: 5},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("tty-%d", i)
				t.Cleanup(func() { s.Remove(t, id) })
				argv := append([]string{s.ctr}, s.Args(s.runArgs(append([]string{"--rm", "-t"}, tc.flags...), id)...)...)
				if tc.cmd != "" {
					argv = append(argv, "sh", "-c", tc.cmd)
				} else {
					argv = append(argv, "/app/hello.wasm", "5")
				}
				// script gives ctr a terminal and exits with its status.
				res, err := clients.Run(context.Background(), clientTimeout, nil, script, "-qec", shellQuote(argv), "/dev/null")
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range tc.want {
					if !strings.Contains(res.Stdout, w) {
						t.Fatalf("ctr run -t: %s, want output with %q", res, w)
					}
				}
				if res.ExitCode != tc.exit {
					t.Fatalf("ctr run -t: %s, want exit %d", res, tc.exit)
				}
			})
		}
	})

	t.Run("PodGrouping", func(t *testing.T) {
		pod := []string{"--annotation", "io.kubernetes.cri.sandbox-id=pod-1"}
		s.startDetached(t, pod, "pod-a", "sleep", "600")
		s.startDetached(t, pod, "pod-b", "sleep", "600")
		s.startDetached(t, nil, "alone", "sleep", "600")
		a, b, alone := s.WaitTaskStatus(t, "pod-a", "RUNNING"), s.WaitTaskStatus(t, "pod-b", "RUNNING"), s.WaitTaskStatus(t, "alone", "RUNNING")
		shimA, shimB, shimAlone := shimPid(t, a.Pid), shimPid(t, b.Pid), shimPid(t, alone.Pid)
		if shimA != shimB {
			t.Fatalf("containers of one pod have different shims: %d (%s) and %d (%s)", shimA, processCmdline(shimA), shimB, processCmdline(shimB))
		}
		if shimA == shimAlone {
			t.Fatalf("a container outside the pod shares the pod's shim %d", shimA)
		}
		if cmd := processCmdline(shimA); !strings.Contains(cmd, "containerd-shim-rune-v2") {
			t.Fatalf("parent of the pod's containers is %q, not the rune shim", cmd)
		}
		addrA, errA := os.ReadFile(filepath.Join(s.bundle("pod-a"), "address"))
		addrB, errB := os.ReadFile(filepath.Join(s.bundle("pod-b"), "address"))
		if errA != nil || errB != nil || string(addrA) != string(addrB) {
			t.Fatalf("shim addresses of the pod: %q (%v), %q (%v); want one", addrA, errA, addrB, errB)
		}
		// Deleting one container of the pod leaves the shim serving the other.
		s.MustCtr(t, "task", "kill", "-s", "SIGKILL", "pod-a")
		s.WaitTaskStatus(t, "pod-a", "STOPPED")
		s.MustCtr(t, "task", "delete", "pod-a")
		if err := unix.Kill(shimA, 0); err != nil {
			t.Fatalf("pod shim %d gone after deleting one of its two containers: %v", shimA, err)
		}
		res := s.CtrCmd(t, "task", "exec", "--exec-id", "still", "--fifo-dir", s.fifoDir, "pod-b", "echo", "still served")
		if res.ExitCode != 0 || res.Stdout != "still served\n" {
			t.Fatalf("exec in the pod's remaining container: %s", res)
		}
		// The last one out stops the shim.
		s.MustCtr(t, "task", "kill", "-s", "SIGKILL", "pod-b")
		s.WaitTaskStatus(t, "pod-b", "STOPPED")
		s.MustCtr(t, "task", "delete", "pod-b")
		if err := clients.WaitFor(30*time.Second, "the pod shim to exit", func() (bool, error) {
			return unix.Kill(shimA, 0) != nil || !strings.Contains(processCmdline(shimA), "containerd-shim-rune-v2"), nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Configuration", func(t *testing.T) {
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "key.pem")
		writeFile(t, keyFile, ecKeyPEM(t))
		notAKey := filepath.Join(dir, "not-a-key.pem")
		writeFile(t, notAKey, "this is no PEM\n")
		tests := []struct {
			name    string
			content string // "" = the file does not exist
			want    string // in ctr's error
		}{
			{name: "unknown key", content: "[rune]\npth = \"/usr/bin/rune\"\n", want: `unknown key "rune.pth"`},
			{name: "bad log level", content: "log_level = \"loud\"\n", want: `log_level "loud"`},
			{name: "wrong type", content: "[rune]\nsystemd_cgroup = \"yes\"\n", want: `key "rune.systemd_cgroup"`},
			{name: "relative rune path", content: "[rune]\npath = \"bin/rune\"\n", want: "rune.path \"bin/rune\": must be an absolute path"},
			{name: "missing rune", content: "[rune]\npath = \"/nonexistent/rune\"\n", want: "/nonexistent/rune"},
			{name: "unavailable carrier", content: "[signing]\nkey_file = \"" + keyFile + "\"\n[carriers]\nenabled = [\"occlum\"]\n", want: `carrier "occlum" is not available`},
			{name: "key file not a key", content: "[signing]\nkey_file = \"" + notAKey + "\"\n", want: "signing.key_file: " + notAKey + ": no PEM block"},
			{name: "missing file", want: "no such file or directory"},
			// Corrupted files: cut short while being written, or overwritten with garbage.
			{name: "truncated", content: "[rune]\npath = \"/usr/bi", want: "line 2, column 15: toml: unterminated basic string"},
			{name: "garbage", content: "\x00\xff\xfe\x01garbage", want: "line 1, column 1: toml: invalid character"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				path := filepath.Join(dir, fmt.Sprintf("bad-%d.toml", i))
				if tc.content != "" {
					writeFile(t, path, tc.content)
				}
				id := fmt.Sprintf("bad-config-%d", i)
				t.Cleanup(func() { s.Remove(t, id) })
				res := s.CtrCmd(t, s.runArgs([]string{"--rm", "--runtime-config-path", path}, id, "echo", "must not run")...)
				if res.ExitCode == 0 || strings.Contains(res.Stdout, "must not run") || !strings.Contains(res.Stderr, tc.want) {
					t.Fatalf("ctr run with configuration %q: got %s, want a failed create naming %q", tc.content, res, tc.want)
				}
				if _, ok := s.Task(t, id); ok {
					t.Fatalf("task %s exists after a refused create", id)
				}
				if _, err := os.Stat(filepath.Join(s.runeStateRoot(), id)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("rune state for %s after a refused create: %v", id, err)
				}
			})
		}
		t.Run("rune beside the shim by default", func(t *testing.T) {
			path := filepath.Join(dir, "default-rune.toml")
			writeFile(t, path, fmt.Sprintf("[rune]\nroot = %q\n", s.runeRoot))
			want := filepath.Join(filepath.Dir(s.shim), "rune")
			if _, err := os.Stat(want); err != nil {
				t.Fatalf("this test expects rune beside the shim (make build puts both in bin/): %v", err)
			}
			const id = "default-rune"
			s.startDetached(t, []string{"--runtime-config-path", path}, id, "sleep", "600")
			s.WaitTaskStatus(t, id, "RUNNING")
			if opts := readShimOptions(t, s.bundle(id)); opts.BinaryName != want {
				t.Fatalf("rune chosen without rune.path: %q, want %q", opts.BinaryName, want)
			}
		})
	})

	t.Run("KeyBroker", func(t *testing.T) { testKBS(t, s) })
	t.Run("CarrierSeal", func(t *testing.T) { testCarrierSeal(t, s) })
	t.Run("Faults", func(t *testing.T) { testFaults(t, s) })

	t.Run("FullDisk", func(t *testing.T) {
		t.Run("ordinary", func(t *testing.T) { testFullDisk(t, s, nil, []string{"echo", "room enough"}, "room enough\n") })
		t.Run("enclave", func(t *testing.T) {
			testFullDisk(t, s, enclaveEnv, []string{"/app/hello.wasm"}, "Hello from an enclave container!")
		})
	})

	t.Run("ContainerdRestart", func(t *testing.T) {
		const id, enclaveID = "survivor", "enclave-survivor"
		s.startDetached(t, nil, id, "sleep", "600")
		logPath := s.startDetached(t, enclaveEnv, enclaveID, "/app/prog.wasm", "sleep")
		before := s.WaitTaskStatus(t, id, "RUNNING")
		enclaveBefore := s.WaitTaskStatus(t, enclaveID, "RUNNING")
		clients.WaitFileLine(t, logPath, "sleeping")
		shim := shimPid(t, before.Pid)

		if err := unix.Kill(s.daemon.PID(), unix.SIGKILL); err != nil {
			t.Fatalf("kill containerd: %v", err)
		}
		if err := s.daemon.Stop(10 * time.Second); err != nil {
			t.Fatalf("wait for the killed containerd: %v", err)
		}
		for _, pid := range []int{shim, before.Pid, enclaveBefore.Pid} {
			if err := unix.Kill(pid, 0); err != nil {
				t.Fatalf("process %d (%s) did not survive containerd's death: %v", pid, processCmdline(pid), err)
			}
		}
		s.startDaemon(t, "containerd-restarted")

		for _, tc := range []struct {
			id  string
			pid int
		}{{id, before.Pid}, {enclaveID, enclaveBefore.Pid}} {
			after, ok := s.Task(t, tc.id)
			if !ok || after.Status != "RUNNING" || after.Pid != tc.pid {
				t.Fatalf("task %s after the restart: %+v (listed %v), want RUNNING with pid %d", tc.id, after, ok, tc.pid)
			}
		}
		res := s.CtrCmd(t, "task", "exec", "--exec-id", "after-restart", "--fifo-dir", s.fifoDir, id, "echo", "reconnected")
		if res.ExitCode != 0 || res.Stdout != "reconnected\n" {
			t.Fatalf("exec after the restart: %s", res)
		}
		res = s.CtrCmd(t, "task", "exec", "--exec-id", "after-restart", "--fifo-dir", s.fifoDir, enclaveID, "/app/prog.wasm", "exit", "3")
		if res.ExitCode != 3 {
			t.Fatalf("enclave exec after the restart: %s, want exit 3", res)
		}
		for _, tc := range []struct {
			id   string
			want string
		}{{id, "137"}, {enclaveID, "137"}} {
			s.MustCtr(t, "task", "kill", "-s", "SIGKILL", tc.id)
			s.WaitTaskStatus(t, tc.id, "STOPPED")
			res := s.CtrCmd(t, "task", "delete", tc.id)
			if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != tc.want {
				t.Fatalf("ctr task delete %s after the restart: got %s, want exit code %s", tc.id, res, tc.want)
			}
		}
	})
}

// eventLine returns the line of `ctr events` output with topic and container id.
func eventLine(out, topic, id string) string {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		// TIMESTAMP (date time zone...) NAMESPACE TOPIC JSON: match fields, not substrings.
		hasTopic := false
		for _, x := range f {
			if x == topic {
				hasTopic = true
			}
		}
		if hasTopic && strings.Contains(l, `"container_id":"`+id+`"`) {
			return l
		}
	}
	return ""
}

// ecKeyPEM is a fresh P-256 private key in SEC 1 PEM.
func ecKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// exitEventLine returns the /tasks/exit line of process id (the container id for init)
// of container cid.
func exitEventLine(out, cid, id string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " /tasks/exit ") && strings.Contains(l, `"container_id":"`+cid+`"`) && strings.Contains(l, `"id":"`+id+`"`) {
			return l
		}
	}
	return ""
}

// shellQuote joins argv into one sh command line.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// shimOptions is the part of the bundle's options.json the tests check.
type shimOptions struct {
	BinaryName string `json:"binary_name"`
	Root       string `json:"root"`
}

func readShimOptions(t *testing.T, bundle string) shimOptions {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bundle, "options.json"))
	if err != nil {
		t.Fatalf("read options.json: %v", err)
	}
	var o shimOptions
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatalf("decode options.json %q: %v", data, err)
	}
	return o
}
