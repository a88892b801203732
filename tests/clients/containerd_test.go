package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// ctrNamespace keeps the suite's containers (and their cgroups,
	// /<namespace>/<id>) apart from anything else on the host.
	ctrNamespace = "rune-clients"
	ctrImage     = "docker.io/library/rune-clients-busybox:latest"
	// ctrShim is the stock shim; it runs the binary given by --runc-binary.
	ctrShim = "io.containerd.runc.v2"
)

// containerdSuite is one private containerd that every subtest of
// TestContainerd shares.
type containerdSuite struct {
	runtime  string // the runtime binary under test
	ctr      string
	dir      string
	state    string // containerd state directory (task bundles live below)
	sock     string
	runcRoot string // --runc-root: where the runtime keeps container state
	fifoDir  string
	logDir   string
	daemon   *Daemon
	Ctr      // ctr against the suite's namespace
}

func startContainerd(t *testing.T) *containerdSuite {
	t.Helper()
	runtime, tools := Prerequisites(t, "containerd", "ctr", "containerd-shim-runc-v2", "busybox")
	dir, err := os.MkdirTemp("", "rune-ctrd-")
	if err != nil {
		t.Fatalf("create suite dir: %v", err)
	}
	s := &containerdSuite{
		runtime:  runtime,
		ctr:      tools["ctr"],
		dir:      dir,
		state:    filepath.Join(dir, "state"),
		sock:     filepath.Join(dir, "containerd.sock"),
		runcRoot: filepath.Join(dir, "runc"),
		fifoDir:  filepath.Join(dir, "fifo"),
		logDir:   filepath.Join(dir, "logs"),
	}
	s.Ctr = Ctr{Bin: s.ctr, Sock: s.sock, Namespace: ctrNamespace}
	t.Cleanup(func() { s.teardown(t) })
	for _, d := range []string{s.fifoDir, s.logDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("create %s: %v", d, err)
		}
	}

	c := NewContainerd(tools["containerd"], s.ctr, dir)
	c.State, c.Sock = s.state, s.sock
	if err := c.WriteConfig("", false, false); err != nil {
		t.Fatal(err)
	}
	err = c.Start("containerd", 10*time.Minute)
	s.daemon = c.Daemon
	if err != nil {
		t.Fatal(err)
	}

	layer, err := BusyboxRootfsTar(tools["busybox"])
	if err != nil {
		t.Fatalf("build image rootfs: %v", err)
	}
	archive, err := OCIArchive(layer, "latest")
	if err != nil {
		t.Fatalf("build OCI archive: %v", err)
	}
	archivePath := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(archivePath, archive, 0o644); err != nil {
		t.Fatalf("write OCI archive: %v", err)
	}
	s.MustCtr(t, "images", "import", "--base-name", strings.TrimSuffix(ctrImage, ":latest"), archivePath)
	if out := s.MustCtr(t, "images", "ls", "-q"); !HasLine(out, ctrImage) {
		t.Fatalf("image %s not listed after import; images: %q", ctrImage, out)
	}
	return s
}

// runArgs builds `ctr run` arguments that select the stock runc v2 shim
// driving the runtime under test, with its state in the suite directory.
func (s *containerdSuite) runArgs(flags []string, id string, cmd ...string) []string {
	args := []string{"run", "--runtime", ctrShim, "--runc-binary", s.runtime, "--runc-root", s.runcRoot, "--fifo-dir", s.fifoDir}
	args = append(append(args, flags...), ctrImage, id)
	return append(args, cmd...)
}

// startDetached runs `ctr run -d` with the task's output in a log file, and
// removes task and container when the test ends. It returns the log path.
func (s *containerdSuite) startDetached(t *testing.T, id string, cmd ...string) string {
	t.Helper()
	logPath := filepath.Join(s.logDir, id+".log")
	s.MustCtr(t, s.runArgs([]string{"-d", "--log-uri", "file://" + logPath}, id, cmd...)...)
	t.Cleanup(func() { s.Remove(t, id) })
	return logPath
}

// bundle is where the shim keeps task id's bundle.
func (s *containerdSuite) bundle(id string) string {
	return filepath.Join(s.state, "io.containerd.runtime.v2.task", ctrNamespace, id)
}

// runtimeStateRoot is the --root the shim hands the runtime: --runc-root
// plus the namespace.
func (s *containerdSuite) runtimeStateRoot() string {
	return filepath.Join(s.runcRoot, ctrNamespace)
}

func (s *containerdSuite) teardown(t *testing.T) {
	ctx := context.Background()
	if s.daemon != nil {
		if res, err := s.Exec(ctx, nil, "container", "ls", "-q"); err == nil && res.ExitCode == 0 {
			for _, id := range strings.Fields(res.Stdout) {
				s.Remove(t, id)
			}
		}
		if err := s.daemon.Stop(30 * time.Second); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if t.Failed() {
			t.Logf("containerd log tail:\n%s", s.daemon.LogTail(40))
		}
	}
	if err := ForceDeleteAll(ctx, s.runtime, s.runtimeStateRoot()); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if pids, err := KillProcessesUnder(s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	} else if len(pids) > 0 {
		t.Logf("teardown: killed leftover processes %v", pids)
	}
	if err := UnmountUnder(s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Errorf("teardown: remove %s: %v", s.dir, err)
	}
	RemoveEmptyCgroups(ctrNamespace)
}

// ctrDeleteExit matches containerd 1.6's report of a task's non-zero exit
// status on `ctr task delete`.
var ctrDeleteExit = regexp.MustCompile(`exit with non-zero exit code (\d+)`)

func TestContainerd(t *testing.T) {
	// The docker and containerd suites use separate daemons.
	t.Parallel()
	s := startContainerd(t)

	t.Run("RunRemoveOutput", func(t *testing.T) {
		tests := []struct {
			name  string
			flags []string
			stdin string
			cmd   []string
			want  string
		}{
			{name: "echo", cmd: []string{"echo", "hello from rune"}, want: "hello from rune\n"},
			{name: "env with spaces", flags: []string{"--env", "GREETING=hello   spaced world"}, cmd: []string{"sh", "-c", `echo "[$GREETING]"`}, want: "[hello   spaced world]\n"},
			{name: "cwd", flags: []string{"--cwd", "/tmp"}, cmd: []string{"sh", "-c", "pwd"}, want: "/tmp\n"},
			{name: "pid 1", cmd: []string{"sh", "-c", "echo $$"}, want: "1\n"},
			// ctr 1.6 does not close the task's stdin at EOF (runc behaves the
			// same), so the reader must stop by itself.
			{name: "stdin", stdin: "line one\nline two\n", cmd: []string{"head", "-n", "2"}, want: "line one\nline two\n"},
			{name: "stderr kept apart", cmd: []string{"sh", "-c", "echo out; echo err >&2"}, want: "out\n"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("run-rm-%d", i)
				var stdin []byte
				if tc.stdin != "" {
					stdin = []byte(tc.stdin)
				}
				res, err := s.Exec(context.Background(), stdin, s.runArgs(append([]string{"--rm"}, tc.flags...), id, tc.cmd...)...)
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != 0 || res.Stdout != tc.want {
					t.Fatalf("ctr run %v: got %s, want exit 0 and stdout %q", tc.cmd, res, tc.want)
				}
				if _, ok := s.Task(t, id); ok {
					t.Fatalf("task %s still listed after ctr run --rm", id)
				}
			})
		}
	})

	t.Run("ExitCode", func(t *testing.T) {
		tests := []struct {
			name string
			cmd  []string
			want int
		}{
			{"zero", []string{"sh", "-c", "exit 0"}, 0},
			{"three", []string{"sh", "-c", "exit 3"}, 3},
			{"255", []string{"sh", "-c", "exit 255"}, 255},
			{"false", []string{"false"}, 1},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				res := s.CtrCmd(t, s.runArgs([]string{"--rm"}, fmt.Sprintf("exit-%d", i), tc.cmd...)...)
				if res.ExitCode != tc.want {
					t.Fatalf("ctr run %v: got %s, want exit %d", tc.cmd, res, tc.want)
				}
			})
		}
	})

	t.Run("MissingExecutableFailsStart", func(t *testing.T) {
		const id = "missing-exe"
		t.Cleanup(func() { s.Remove(t, id) })
		res := s.CtrCmd(t, s.runArgs([]string{"--rm"}, id, "/bin/no-such-binary")...)
		// The runtime's start error reaches the client through the shim.
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "no such file or directory") {
			t.Fatalf("ctr run of a missing executable: got %s, want a failure naming %q", res, "no such file or directory")
		}
	})

	t.Run("DetachedExec", func(t *testing.T) {
		const id = "exec-target"
		s.startDetached(t, id, "sleep", "600")
		s.WaitTaskStatus(t, id, "RUNNING")
		tests := []struct {
			name     string
			flags    []string
			cmd      []string
			want     string
			wantExit int
		}{
			{name: "output", cmd: []string{"echo", "exec works"}, want: "exec works\n"},
			{name: "exit code", cmd: []string{"sh", "-c", "echo before; exit 5"}, want: "before\n", wantExit: 5},
			{name: "cwd", flags: []string{"--cwd", "/tmp"}, cmd: []string{"sh", "-c", "pwd"}, want: "/tmp\n"},
			{name: "user", flags: []string{"--user", "1234"}, cmd: []string{"id", "-u"}, want: "1234\n"},
			{name: "sees container pid 1", cmd: []string{"cat", "/proc/1/cmdline"}, want: "sleep\x00600\x00"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"task", "exec", "--exec-id", fmt.Sprintf("exec-%d", i), "--fifo-dir", s.fifoDir}, tc.flags...)
				res := s.CtrCmd(t, append(append(args, id), tc.cmd...)...)
				if res.ExitCode != tc.wantExit || res.Stdout != tc.want {
					t.Fatalf("ctr task exec %v: got %s, want exit %d and stdout %q", tc.cmd, res, tc.wantExit, tc.want)
				}
			})
		}
	})

	t.Run("TaskPs", func(t *testing.T) {
		const id = "ps-target"
		s.startDetached(t, id, "sh", "-c", "sleep 600 & wait")
		tk := s.WaitTaskStatus(t, id, "RUNNING")
		var pids []int
		err := WaitFor(30*time.Second, "init and its child in ctr task ps", func() (bool, error) {
			out := s.MustCtr(t, "task", "ps", id)
			pids = pids[:0]
			for _, line := range strings.Split(out, "\n")[1:] {
				if f := strings.Fields(line); len(f) > 0 {
					pid, err := strconv.Atoi(f[0])
					if err != nil {
						return false, fmt.Errorf("bad pid line %q", line)
					}
					pids = append(pids, pid)
				}
			}
			return len(pids) == 2, fmt.Errorf("ctr task ps: %q", out)
		})
		if err != nil {
			t.Fatal(err)
		}
		if pids[0] != tk.Pid && pids[1] != tk.Pid {
			t.Fatalf("ctr task ps pids %v do not include the init pid %d", pids, tk.Pid)
		}
	})

	t.Run("PauseResume", func(t *testing.T) {
		const id = "pause-target"
		s.startDetached(t, id, "sleep", "600")
		s.WaitTaskStatus(t, id, "RUNNING")
		s.MustCtr(t, "task", "pause", id)
		if tk, _ := s.Task(t, id); tk.Status != "PAUSED" {
			t.Fatalf("task status after pause = %q, want PAUSED", tk.Status)
		}
		if st, err := QueryState(context.Background(), s.runtime, s.runtimeStateRoot(), id); err != nil || st.Status != "paused" {
			t.Fatalf("runtime state after pause = %+v, %v; want paused", st, err)
		}
		s.MustCtr(t, "task", "resume", id)
		if tk, _ := s.Task(t, id); tk.Status != "RUNNING" {
			t.Fatalf("task status after resume = %q, want RUNNING", tk.Status)
		}
		if st, err := QueryState(context.Background(), s.runtime, s.runtimeStateRoot(), id); err != nil || st.Status != "running" {
			t.Fatalf("runtime state after resume = %+v, %v; want running", st, err)
		}
		res := s.CtrCmd(t, "task", "exec", "--exec-id", "after-resume", "--fifo-dir", s.fifoDir, id, "echo", "awake")
		if res.ExitCode != 0 || res.Stdout != "awake\n" {
			t.Fatalf("exec after resume: %s", res)
		}
	})

	// A foreground `ctr run` reports the exit status of a task that another
	// client signals.
	t.Run("KillForeground", func(t *testing.T) {
		tests := []struct {
			name     string
			signal   string
			script   string
			wantExit int
			wantLine string
		}{
			{"SIGTERM trap", "SIGTERM", `trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done`, 42, "got TERM"},
			{"SIGUSR1 trap", "SIGUSR1", `trap 'echo got USR1; exit 10' USR1; echo ready; while :; do sleep 0.1; done`, 10, "got USR1"},
			{"SIGKILL", "SIGKILL", `echo ready; while :; do sleep 0.1; done`, 137, ""},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("kill-fg-%d", i)
				t.Cleanup(func() { s.Remove(t, id) })
				fg, err := StartBackground(clientTimeout, s.ctr, s.Args(s.runArgs([]string{"--rm"}, id, "sh", "-c", tc.script)...)...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(fg.Stop)
				if err := WaitFor(60*time.Second, "ready from the task", func() (bool, error) {
					return HasLine(fg.Stdout(), "ready") || fg.Exited(), nil
				}); err != nil {
					t.Fatal(err)
				}
				if fg.Exited() {
					res, err := fg.Wait()
					t.Fatalf("ctr run ended before being signalled: %v %s", err, res)
				}
				s.MustCtr(t, "task", "kill", "-s", tc.signal, id)
				res, err := fg.Wait()
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != tc.wantExit || (tc.wantLine != "" && !HasLine(res.Stdout, tc.wantLine)) {
					t.Fatalf("ctr run after kill -s %s: got %s, want exit %d and a line %q", tc.signal, res, tc.wantExit, tc.wantLine)
				}
			})
		}
	})

	t.Run("KillDeleteRemove", func(t *testing.T) {
		const id = "delete-target"
		logPath := s.startDetached(t, id, "sh", "-c", `trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done`)
		WaitFileLine(t, logPath, "ready")
		s.MustCtr(t, "task", "kill", "-s", "SIGTERM", id)
		s.WaitTaskStatus(t, id, "STOPPED")
		WaitFileLine(t, logPath, "got TERM")
		// The runtime still holds the stopped container until the task is
		// deleted.
		stateDir := filepath.Join(s.runtimeStateRoot(), id)
		if st, err := QueryState(context.Background(), s.runtime, s.runtimeStateRoot(), id); err != nil || st.Status != "stopped" {
			t.Fatalf("runtime state of the stopped task = %+v, %v; want stopped", st, err)
		}
		res := s.CtrCmd(t, "task", "delete", id)
		if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != "42" {
			t.Fatalf("ctr task delete: got %s, want success reporting exit code 42", res)
		}
		if _, ok := s.Task(t, id); ok {
			t.Fatalf("task %s still listed after ctr task delete", id)
		}
		if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("runtime state dir after task delete: stat err %v, want not exist", err)
		}
		s.MustCtr(t, "container", "rm", id)
		if out := s.MustCtr(t, "container", "ls", "-q"); HasLine(out, id) {
			t.Fatalf("container %s still listed after ctr container rm", id)
		}
		if out := s.MustCtr(t, "snapshots", "ls"); strings.Contains(out, id) {
			t.Fatalf("snapshot of %s left after ctr container rm: %q", id, out)
		}
	})

	t.Run("RunsUnderRuntimeUnderTest", func(t *testing.T) {
		const id = "verify-target"
		s.startDetached(t, id, "sleep", "600")
		tk := s.WaitTaskStatus(t, id, "RUNNING")
		opts, err := ReadShimOptions(s.bundle(id))
		if err != nil {
			t.Fatal(err)
		}
		if opts.BinaryName != s.runtime || opts.Root != s.runcRoot {
			t.Fatalf("shim options = %+v, want binary %s and root %s", opts, s.runtime, s.runcRoot)
		}
		if _, err := os.Stat(filepath.Join(s.runtimeStateRoot(), id, "state.json")); err != nil {
			t.Fatalf("runtime state for a running task: %v", err)
		}
		st, err := QueryState(context.Background(), s.runtime, s.runtimeStateRoot(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.ID != id || st.Pid != tk.Pid || st.Status != "running" || st.Bundle != s.bundle(id) {
			t.Fatalf("runtime state = %+v, want id %s, pid %d, status running, bundle %s", st, id, tk.Pid, s.bundle(id))
		}
		s.MustCtr(t, "task", "kill", "-s", "SIGKILL", id)
		s.WaitTaskStatus(t, id, "STOPPED")
		res := s.CtrCmd(t, "task", "delete", id)
		if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != "137" {
			t.Fatalf("ctr task delete after SIGKILL: got %s, want success reporting exit code 137", res)
		}
	})
}
