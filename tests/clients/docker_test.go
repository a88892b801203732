package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dockerRuntimeName is the name the suite's dockerd knows the runtime under
// test by (--add-runtime dockerRuntimeName=<binary>).
const dockerRuntimeName = "rune"

// dockerImage is the busybox image imported into the suite's daemon.
const dockerImage = "rune-clients-busybox:latest"

// dockerNamespace is the containerd namespace dockerd runs containers in.
const dockerNamespace = "moby"

// dockerCgroupParent holds the suite's container cgroups.
const dockerCgroupParent = "rune-clients-docker"

// clientTimeout bounds every single client command.
const clientTimeout = 90 * time.Second

// dockerSuite is one private dockerd (with the containerd it supervises)
// that every subtest of TestDocker shares.
type dockerSuite struct {
	runtime   string // the runtime binary under test
	cli       string
	host      string // -H value
	dataRoot  string
	execRoot  string
	cliConfig string // private DOCKER_CONFIG directory
	daemon    *Daemon
}

func startDocker(t *testing.T) *dockerSuite {
	t.Helper()
	runtime, tools := Prerequisites(t, "dockerd", "docker", "containerd", "containerd-shim-runc-v2", "busybox")
	dir, err := os.MkdirTemp("", "rune-docker-")
	if err != nil {
		t.Fatalf("create suite dir: %v", err)
	}
	s := &dockerSuite{
		runtime:  runtime,
		cli:      tools["docker"],
		host:     "unix://" + filepath.Join(dir, "docker.sock"),
		dataRoot: filepath.Join(dir, "data"),
		execRoot: filepath.Join(dir, "exec"),
	}
	t.Cleanup(func() { s.teardown(t, dir) })

	configFile := filepath.Join(dir, "daemon.json")
	// An empty config keeps a host /etc/docker/daemon.json out of the suite.
	if err := os.WriteFile(configFile, []byte("{}\n"), 0o644); err != nil {
		t.Fatalf("write daemon config: %v", err)
	}
	s.cliConfig = filepath.Join(dir, "cli-config")
	if err := os.Mkdir(s.cliConfig, 0o700); err != nil {
		t.Fatalf("create docker CLI config dir: %v", err)
	}

	s.daemon, err = StartDaemon("dockerd", dir, 10*time.Minute,
		tools["dockerd"],
		"--config-file", configFile,
		"--data-root", s.dataRoot,
		"--exec-root", s.execRoot,
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", s.host,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
		"--add-runtime", dockerRuntimeName+"="+runtime,
		// A private cgroup parent, removed at teardown, instead of /docker.
		"--cgroup-parent", "/"+dockerCgroupParent,
	)
	if err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	err = s.daemon.WaitReady(60*time.Second, func(ctx context.Context) error {
		res, err := s.exec(ctx, nil, "version", "--format", "{{.Server.Version}}")
		if err == nil && res.ExitCode != 0 {
			err = errors.New(res.String())
		}
		return err
	})
	if err != nil {
		t.Fatalf("dockerd: %v", err)
	}

	busybox := tools["busybox"]
	layer, err := BusyboxRootfsTar(busybox)
	if err != nil {
		t.Fatalf("build image rootfs: %v", err)
	}
	res, err := s.exec(context.Background(), layer, "import", "-", dockerImage)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("docker import: %v %s", err, res)
	}
	return s
}

func (s *dockerSuite) exec(ctx context.Context, stdin []byte, args ...string) (Result, error) {
	// A private --config keeps the host's ~/.docker (contexts, credentials)
	// out of the suite.
	full := append([]string{"--config", s.cliConfig, "-H", s.host}, args...)
	return Run(ctx, clientTimeout, stdin, s.cli, full...)
}

// docker runs a docker command; only a failure to run it at all is fatal.
func (s *dockerSuite) docker(t *testing.T, args ...string) Result {
	t.Helper()
	res, err := s.exec(context.Background(), nil, args...)
	if err != nil {
		t.Fatalf("docker: %v", err)
	}
	return res
}

// mustDocker runs a docker command that must succeed and returns its
// trimmed stdout.
func (s *dockerSuite) mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	res := s.docker(t, args...)
	if res.ExitCode != 0 {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), res)
	}
	return strings.TrimSpace(res.Stdout)
}

// runFlags select the runtime under test and keep containers off the network.
func runFlags() []string {
	return []string{"--runtime", dockerRuntimeName, "--network", "none"}
}

// startDetached starts a named container running cmd and removes it when the
// test ends. It returns the container's full ID.
func (s *dockerSuite) startDetached(t *testing.T, name string, cmd ...string) string {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name}, runFlags()...)
	args = append(append(args, dockerImage), cmd...)
	id := s.mustDocker(t, args...)
	t.Cleanup(func() {
		if res, err := s.exec(context.Background(), nil, "rm", "-f", name); err != nil || (res.ExitCode != 0 && !strings.Contains(res.Stderr, "No such container")) {
			t.Errorf("cleanup docker rm -f %s: %v %s", name, err, res)
		}
	})
	return id
}

func (s *dockerSuite) inspect(t *testing.T, name, format string) string {
	t.Helper()
	return s.mustDocker(t, "inspect", "-f", format, name)
}

// waitLogLine waits until the container's stdout has a line equal to want
// (used to know a shell trap is installed before signalling).
func (s *dockerSuite) waitLogLine(t *testing.T, name, want string) {
	t.Helper()
	err := WaitFor(60*time.Second, fmt.Sprintf("%q in logs of %s", want, name), func() (bool, error) {
		res, err := s.exec(context.Background(), nil, "logs", name)
		if err != nil {
			return false, err
		}
		return HasLine(res.Stdout, want), fmt.Errorf("logs so far: %s", res)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wait runs `docker wait` and returns the exit code it reports.
func (s *dockerSuite) wait(t *testing.T, name string) int {
	t.Helper()
	out := s.mustDocker(t, "wait", name)
	code, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("docker wait %s printed %q, not an exit code", name, out)
	}
	return code
}

// bundle is where dockerd's containerd keeps the task bundle of container id.
func (s *dockerSuite) bundle(id string) string {
	return filepath.Join(s.execRoot, "containerd", "daemon", "io.containerd.runtime.v2.task", dockerNamespace, id)
}

// runtimeRoot returns the --root the shim passes to the runtime for
// container id, read from the shim's own options record, and checks that
// the shim was told to run the binary under test.
func (s *dockerSuite) runtimeRoot(t *testing.T, id string) string {
	t.Helper()
	opts, err := ReadShimOptions(s.bundle(id))
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	if opts.BinaryName != s.runtime {
		t.Fatalf("shim runtime binary = %q, want %q (container did not run under the runtime under test)", opts.BinaryName, s.runtime)
	}
	if opts.Root == "" || !strings.HasPrefix(opts.Root, s.execRoot+"/") {
		t.Fatalf("shim runtime root = %q, want a directory under the suite's exec-root %s", opts.Root, s.execRoot)
	}
	return filepath.Join(opts.Root, dockerNamespace)
}

func (s *dockerSuite) teardown(t *testing.T, dir string) {
	ctx := context.Background()
	if s.daemon != nil {
		res, err := s.exec(ctx, nil, "ps", "-aq")
		if err == nil && res.ExitCode == 0 {
			if ids := strings.Fields(res.Stdout); len(ids) > 0 {
				if res, err := s.exec(ctx, nil, append([]string{"rm", "-f"}, ids...)...); err != nil || res.ExitCode != 0 {
					t.Errorf("teardown: docker rm -f: %v %s", err, res)
				}
			}
		}
		if err := s.daemon.Stop(30 * time.Second); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if t.Failed() {
			t.Logf("dockerd log tail:\n%s", s.daemon.LogTail(40))
		}
	}
	// Containers whose shim or daemon died are still known to the runtime.
	if err := ForceDeleteAll(ctx, s.runtime, filepath.Join(s.execRoot, "runtime-runc", dockerNamespace)); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if pids, err := KillProcessesUnder(dir); err != nil {
		t.Errorf("teardown: %v", err)
	} else if len(pids) > 0 {
		t.Logf("teardown: killed leftover processes %v", pids)
	}
	if err := UnmountUnder(dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("teardown: remove %s: %v", dir, err)
	}
	RemoveEmptyCgroups(dockerCgroupParent)
}

func TestDocker(t *testing.T) {
	// The docker and containerd suites use separate daemons.
	t.Parallel()
	s := startDocker(t)

	t.Run("RunOutput", func(t *testing.T) {
		tests := []struct {
			name  string
			flags []string
			stdin string
			cmd   []string
			want  string
		}{
			{name: "echo", cmd: []string{"echo", "hello from rune"}, want: "hello from rune\n"},
			{name: "env with spaces", flags: []string{"-e", "GREETING=hello   spaced world"}, cmd: []string{"sh", "-c", `echo "[$GREETING]"`}, want: "[hello   spaced world]\n"},
			{name: "workdir", flags: []string{"-w", "/tmp"}, cmd: []string{"sh", "-c", "pwd"}, want: "/tmp\n"},
			{name: "hostname", flags: []string{"--hostname", "runebox"}, cmd: []string{"hostname"}, want: "runebox\n"},
			{name: "user", flags: []string{"-u", "1000:1001"}, cmd: []string{"sh", "-c", `echo "$(id -u):$(id -g)"`}, want: "1000:1001\n"},
			{name: "pid 1", cmd: []string{"sh", "-c", "echo $$"}, want: "1\n"},
			{name: "stdin", flags: []string{"-i"}, stdin: "line one\nline two\n", cmd: []string{"cat"}, want: "line one\nline two\n"},
			{name: "stderr kept apart", cmd: []string{"sh", "-c", "echo out; echo err >&2"}, want: "out\n"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"run", "--rm"}, runFlags()...)
				args = append(append(append(args, tc.flags...), dockerImage), tc.cmd...)
				var stdin []byte
				if tc.stdin != "" {
					stdin = []byte(tc.stdin)
				}
				res, err := s.exec(context.Background(), stdin, args...)
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != 0 || res.Stdout != tc.want {
					t.Fatalf("docker run %v: got %s, want exit 0 and stdout %q", tc.cmd, res, tc.want)
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
			// dockerd maps the runtime's "no such file or directory" start
			// error to 127, as a shell would.
			{"missing executable", []string{"/bin/no-such-binary"}, 127},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				args := append(append([]string{"run", "--rm"}, runFlags()...), dockerImage)
				res := s.docker(t, append(args, tc.cmd...)...)
				if res.ExitCode != tc.want {
					t.Fatalf("docker run %v: got %s, want exit %d", tc.cmd, res, tc.want)
				}
			})
		}
	})

	t.Run("Exec", func(t *testing.T) {
		const name = "exec-target"
		s.startDetached(t, name, "sleep", "600")
		tests := []struct {
			name     string
			flags    []string
			cmd      []string
			want     string
			wantExit int
		}{
			{name: "output", cmd: []string{"echo", "exec works"}, want: "exec works\n"},
			{name: "exit code", cmd: []string{"sh", "-c", "echo before; exit 7"}, want: "before\n", wantExit: 7},
			{name: "env with spaces", flags: []string{"-e", "MSG=two  words and\ttab"}, cmd: []string{"sh", "-c", `echo "[$MSG]"`}, want: "[two  words and\ttab]\n"},
			{name: "workdir", flags: []string{"-w", "/tmp"}, cmd: []string{"sh", "-c", "pwd"}, want: "/tmp\n"},
			{name: "user", flags: []string{"-u", "1234"}, cmd: []string{"id", "-u"}, want: "1234\n"},
			{name: "sees container pid 1", cmd: []string{"cat", "/proc/1/cmdline"}, want: "sleep\x00600\x00"},
			{name: "missing executable", cmd: []string{"/bin/no-such-binary"}, wantExit: 126},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				args := append(append([]string{"exec"}, tc.flags...), name)
				res := s.docker(t, append(args, tc.cmd...)...)
				if res.ExitCode != tc.wantExit || (tc.want != "" && res.Stdout != tc.want) {
					t.Fatalf("docker exec %v: got %s, want exit %d and stdout %q", tc.cmd, res, tc.wantExit, tc.want)
				}
			})
		}
	})

	t.Run("LogsOfDetached", func(t *testing.T) {
		const name = "logs-target"
		s.startDetached(t, name, "sh", "-c", "echo first; echo to-stderr >&2; echo second")
		if code := s.wait(t, name); code != 0 {
			t.Fatalf("docker wait: exit %d, want 0", code)
		}
		res := s.docker(t, "logs", name)
		if res.ExitCode != 0 || res.Stdout != "first\nsecond\n" || res.Stderr != "to-stderr\n" {
			t.Fatalf("docker logs: got %s, want stdout %q and stderr %q", res, "first\nsecond\n", "to-stderr\n")
		}
	})

	t.Run("StopRunsTermTrap", func(t *testing.T) {
		const name = "stop-target"
		s.startDetached(t, name, "sh", "-c", `trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done`)
		s.waitLogLine(t, name, "ready")
		// A generous grace period: the trap, not docker's SIGKILL, must end it.
		s.mustDocker(t, "stop", "-t", "60", name)
		if code := s.inspect(t, name, "{{.State.ExitCode}}"); code != "42" {
			t.Fatalf("exit code after docker stop = %s, want 42 (from the TERM trap)", code)
		}
		if logs := s.mustDocker(t, "logs", name); !HasLine(logs, "got TERM") {
			t.Fatalf("logs after docker stop = %q, want a line %q", logs, "got TERM")
		}
	})

	t.Run("KillIs137", func(t *testing.T) {
		const name = "kill-target"
		s.startDetached(t, name, "sleep", "600")
		s.mustDocker(t, "kill", name)
		if code := s.wait(t, name); code != 137 {
			t.Fatalf("docker wait after docker kill = %d, want 137", code)
		}
		if got := s.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}"); got != "exited 137 false" {
			t.Fatalf("state after kill = %q, want %q", got, "exited 137 false")
		}
	})

	t.Run("KillUSR1ReachesTrap", func(t *testing.T) {
		const name = "usr1-target"
		s.startDetached(t, name, "sh", "-c", `trap 'echo got USR1; exit 10' USR1; echo ready; while :; do sleep 0.1; done`)
		s.waitLogLine(t, name, "ready")
		s.mustDocker(t, "kill", "-s", "USR1", name)
		if code := s.wait(t, name); code != 10 {
			t.Fatalf("docker wait after kill -s USR1 = %d, want 10 (from the USR1 trap)", code)
		}
		if logs := s.mustDocker(t, "logs", name); !HasLine(logs, "got USR1") {
			t.Fatalf("logs = %q, want a line %q", logs, "got USR1")
		}
	})

	t.Run("RemoveForce", func(t *testing.T) {
		const name = "rmf-target"
		id := s.startDetached(t, name, "sleep", "600")
		root := s.runtimeRoot(t, id)
		pid, err := strconv.Atoi(s.inspect(t, name, "{{.State.Pid}}"))
		if err != nil || pid <= 0 {
			t.Fatalf("container pid: %v", err)
		}
		s.mustDocker(t, "rm", "-f", name)
		if res := s.docker(t, "inspect", name); res.ExitCode == 0 {
			t.Fatalf("docker inspect after rm -f succeeded: %s", res)
		}
		if _, err := os.Stat(filepath.Join(root, id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("runtime state dir %s after rm -f: stat err %v, want not exist", filepath.Join(root, id), err)
		}
		if err := WaitFor(30*time.Second, "container process to be gone", func() (bool, error) {
			_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
			return errors.Is(err, os.ErrNotExist), nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("PauseUnpause", func(t *testing.T) {
		const name = "pause-target"
		id := s.startDetached(t, name, "sleep", "600")
		root := s.runtimeRoot(t, id)
		s.mustDocker(t, "pause", name)
		if got := s.inspect(t, name, "{{.State.Status}} {{.State.Paused}}"); got != "paused true" {
			t.Fatalf("docker state after pause = %q, want %q", got, "paused true")
		}
		if st, err := QueryState(context.Background(), s.runtime, root, id); err != nil || st.Status != "paused" {
			t.Fatalf("runtime state after pause = %+v, %v; want status paused", st, err)
		}
		if res := s.docker(t, "exec", name, "true"); res.ExitCode == 0 {
			t.Fatalf("docker exec into a paused container succeeded: %s", res)
		}
		s.mustDocker(t, "unpause", name)
		if got := s.inspect(t, name, "{{.State.Status}} {{.State.Paused}}"); got != "running false" {
			t.Fatalf("docker state after unpause = %q, want %q", got, "running false")
		}
		if st, err := QueryState(context.Background(), s.runtime, root, id); err != nil || st.Status != "running" {
			t.Fatalf("runtime state after unpause = %+v, %v; want status running", st, err)
		}
		if out := s.mustDocker(t, "exec", name, "echo", "awake"); out != "awake" {
			t.Fatalf("docker exec after unpause = %q, want %q", out, "awake")
		}
	})

	t.Run("InspectAndRuntimeState", func(t *testing.T) {
		const name = "inspect-target"
		id := s.startDetached(t, name, "sh", "-c", `echo ready; sleep 600`)
		s.waitLogLine(t, name, "ready")
		if got := s.inspect(t, name, "{{.HostConfig.Runtime}}"); got != dockerRuntimeName {
			t.Fatalf("HostConfig.Runtime = %q, want %q", got, dockerRuntimeName)
		}
		if got := s.inspect(t, name, "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.Restarting}} {{.State.Dead}} {{.State.ExitCode}}"); got != "running true false false false 0" {
			t.Fatalf("running state = %q, want %q", got, "running true false false false 0")
		}
		pid, err := strconv.Atoi(s.inspect(t, name, "{{.State.Pid}}"))
		if err != nil || pid <= 0 {
			t.Fatalf("State.Pid: %v", err)
		}
		// The shim was told to run the runtime under test, and that runtime
		// holds the container's state, agreeing with dockerd on its init pid.
		root := s.runtimeRoot(t, id)
		if _, err := os.Stat(filepath.Join(root, id, "state.json")); err != nil {
			t.Fatalf("runtime state for a running container: %v", err)
		}
		st, err := QueryState(context.Background(), s.runtime, root, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.ID != id || st.Pid != pid || st.Status != "running" || st.Bundle != s.bundle(id) {
			t.Fatalf("runtime state = %+v, want id %s, pid %d, status running, bundle %s", st, id, pid, s.bundle(id))
		}
		s.mustDocker(t, "kill", name)
		if code := s.wait(t, name); code != 137 {
			t.Fatalf("exit after kill = %d, want 137", code)
		}
		got := s.inspect(t, name, "{{.State.Status}} {{.State.Running}} {{.State.Pid}} {{.State.ExitCode}}")
		if got != "exited false 0 137" {
			t.Fatalf("exited state = %q, want %q", got, "exited false 0 137")
		}
		if started, finished := s.inspect(t, name, "{{.State.StartedAt}}"), s.inspect(t, name, "{{.State.FinishedAt}}"); strings.HasPrefix(started, "0001") || strings.HasPrefix(finished, "0001") {
			t.Fatalf("StartedAt %s / FinishedAt %s not set", started, finished)
		}
	})

	t.Run("Enclave", func(t *testing.T) { testDockerEnclave(t, s) })
	t.Run("EnclaveKeyBroker", func(t *testing.T) { testDockerKBS(t, s) })
	t.Run("EnclaveEncryptedLayers", func(t *testing.T) { testDockerEncryptedLayers(t, s) })
}
