package clients

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// podmanImage is the busybox image with the wasm workloads (enclaveImageTar), imported into
// the suite's storage.
const podmanImage = "localhost/rune-clients-podman:latest"

// podmanCgroupParent holds the suite's container cgroups (podman's default is /libpod_parent).
const podmanCgroupParent = "rune-clients-podman"

// podmanBlobCache is where podman (containers/image) keeps, for root, a cache of blob
// information, whatever --root says; the suite removes it when it created it.
const podmanBlobCache = "/var/lib/containers"

// podmanSuite is Debian's podman (4.3) with conmon, every path of its own below dir.
type podmanSuite struct {
	bin  string
	dir  string
	args []string // global flags
	env  []string
}

func startPodman(t *testing.T) *podmanSuite {
	t.Helper()
	_, tools := Prerequisites(t, "podman", "conmon", "runc", "busybox", "go")
	dir, err := os.MkdirTemp("", "rune-podman-")
	if err != nil {
		t.Fatalf("create suite dir: %v", err)
	}
	s := &podmanSuite{bin: tools["podman"], dir: dir}
	_, blobCacheErr := os.Stat(podmanBlobCache)
	t.Cleanup(func() { s.teardown(t, errors.Is(blobCacheErr, fs.ErrNotExist)) })

	// podman's default ulimits (nofile, nproc) ask for more than this VM's hard limits and
	// fail every container, runc's too: containers.conf clears them. Its own file also keeps a
	// host /etc/containers/containers.conf out of the suite.
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.env = append(os.Environ(), "CONTAINERS_CONF="+conf)
	s.args = []string{
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--network-config-dir", filepath.Join(dir, "net"),
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "vfs",
	}
	archive := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(archive, enclaveImageTar(t, enclaveImageFiles(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(t, "import", "--change", "ENV=PATH=/bin", archive, podmanImage)
	return s
}

// exec runs podman with the suite's flags and environment; a non-zero exit is in the Result.
func (s *podmanSuite) exec(ctx context.Context, args ...string) (Result, error) {
	argv := append([]string{"-i"}, s.env...)
	argv = append(append(argv, s.bin), s.args...)
	return Run(ctx, clientTimeout, nil, "/usr/bin/env", append(argv, args...)...)
}

// run runs podman; only a failure to run it at all is fatal.
func (s *podmanSuite) run(t *testing.T, args ...string) Result {
	t.Helper()
	res, err := s.exec(context.Background(), args...)
	if err != nil {
		t.Fatalf("podman: %v", err)
	}
	return res
}

// must runs a podman command that must exit 0 and returns its trimmed stdout.
func (s *podmanSuite) must(t *testing.T, args ...string) string {
	t.Helper()
	res := s.run(t, args...)
	if res.ExitCode != 0 {
		t.Fatalf("podman %s: %s", strings.Join(args, " "), res)
	}
	return strings.TrimSpace(res.Stdout)
}

func (s *podmanSuite) teardown(t *testing.T, removeBlobCache bool) {
	if res, err := s.exec(context.Background(), "rm", "--all", "--force", "--time", "0"); err != nil || res.ExitCode != 0 {
		t.Errorf("teardown: podman rm --all: %v %s", err, res)
	}
	if res, err := s.exec(context.Background(), "rmi", "--all", "--force"); err != nil || res.ExitCode != 0 {
		t.Errorf("teardown: podman rmi --all: %v %s", err, res)
	}
	if pids, err := KillProcessesUnder(s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	} else if len(pids) > 0 {
		t.Errorf("teardown: processes left (killed): %v", pids)
	}
	if err := UnmountUnder(s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Errorf("teardown: remove %s: %v", s.dir, err)
	}
	// conmon runs in <cgroup parent>/conmon of each hierarchy.
	for _, h := range cgroupHierarchiesForPodman() {
		_ = os.Remove(filepath.Join(h, podmanCgroupParent, "conmon"))
	}
	RemoveEmptyCgroups(podmanCgroupParent)
	if removeBlobCache {
		if err := os.RemoveAll(podmanBlobCache); err != nil {
			t.Errorf("teardown: remove %s: %v", podmanBlobCache, err)
		}
	}
}

// runtimeFlags select the runtime binary and keep the container off the network and in the
// suite's cgroup parent.
func (s *podmanSuite) runtimeFlags(runtime string) []string {
	return []string{"--runtime", runtime, "--network", "none", "--cgroup-parent", "/" + podmanCgroupParent}
}

// exitCode is the container's recorded exit code.
func (s *podmanSuite) exitCode(t *testing.T, name string) int {
	t.Helper()
	out := s.must(t, "wait", name)
	code, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("podman wait %s printed %q", name, out)
	}
	return code
}

// waitLog waits until the container's log holds the line want.
func (s *podmanSuite) waitLog(t *testing.T, name, want string) {
	t.Helper()
	err := WaitFor(30*time.Second, fmt.Sprintf("%q in the log of %s", want, name), func() (bool, error) {
		res := s.run(t, "logs", name)
		return HasLine(res.Stdout, want), fmt.Errorf("logs: %s", res)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPodman drives rune with Debian's podman and conmon (`podman --runtime /path/to/rune`),
// beside runc as the control: output, exit codes, detached containers with logs, exec, stop
// and rm; and, for rune, enclave containers (sim, builtin:wasm).
func TestPodman(t *testing.T) {
	t.Parallel()
	runeBin, tools := Prerequisites(t, "runc")
	s := startPodman(t)
	for _, rt := range []struct{ name, bin string }{{"rune", runeBin}, {"runc", tools["runc"]}} {
		t.Run(rt.name, func(t *testing.T) {
			flags := s.runtimeFlags(rt.bin)
			t.Run("output and exit code", func(t *testing.T) {
				res := s.run(t, append(append([]string{"run", "--rm"}, flags...), podmanImage, "sh", "-c", "echo out; echo err >&2; exit 7")...)
				if res.ExitCode != 7 || res.Stdout != "out\n" || !strings.Contains(res.Stderr, "err") {
					t.Fatalf("podman run: %s; want exit 7, stdout \"out\\n\", err on stderr", res)
				}
			})
			t.Run("detached logs exec stop rm", func(t *testing.T) {
				name := "sleeper-" + rt.name
				s.must(t, append(append([]string{"run", "-d", "--name", name}, flags...), podmanImage, "sh", "-c", "echo started; exec sleep 600")...)
				s.waitLog(t, name, "started")
				if st := s.must(t, "inspect", "--format", "{{.State.Status}} {{.OCIRuntime}}", name); st != "running "+rt.bin {
					t.Fatalf("podman inspect: %q, want running under %s", st, rt.bin)
				}
				for _, tc := range []struct {
					argv []string
					out  string
					code int
				}{
					{[]string{"echo", "exec works"}, "exec works\n", 0},
					{[]string{"sh", "-c", "echo before; exit 5"}, "before\n", 5},
					{[]string{"cat", "/proc/1/cmdline"}, "sleep\x00600\x00", 0},
				} {
					if res := s.run(t, append([]string{"exec", name}, tc.argv...)...); res.ExitCode != tc.code || res.Stdout != tc.out {
						t.Errorf("podman exec %q: %s; want exit %d, stdout %q", tc.argv, res, tc.code, tc.out)
					}
				}
				// sleep, PID 1 of the container, ignores SIGTERM: stop kills it.
				s.must(t, "stop", "--time", "1", name)
				if code := s.exitCode(t, name); code != 137 {
					t.Errorf("exit code after podman stop: %d, want 137", code)
				}
				s.must(t, "rm", name)
				if res := s.run(t, "inspect", name); res.ExitCode == 0 {
					t.Errorf("%s still exists after podman rm", name)
				}
			})
		})
	}

	t.Run("rune enclave", func(t *testing.T) {
		flags := append(s.runtimeFlags(runeBin), "-e", "ENCLAVE_TYPE=sim", "-e", "ENCLAVE_RUNTIME_PATH=builtin:wasm")
		res := s.run(t, append(append([]string{"run", "--rm"}, flags...), podmanImage, "/app/hello.wasm", "7")...)
		if res.ExitCode != 7 || !strings.Contains(res.Stdout, "Hello from an enclave container!") || !strings.Contains(res.Stdout, `args=["/app/hello.wasm" "7"]`) {
			t.Fatalf("podman run hello.wasm 7: %s", res)
		}
		if res := s.run(t, append(append([]string{"run", "--rm"}, flags...), podmanImage, "/app/prog.wasm", "env", "ENCLAVE_TYPE")...); res.ExitCode != 0 || res.Stdout != "unset\n" {
			t.Fatalf("the enclave settings as the workload sees them: %s", res)
		}
		s.must(t, append(append([]string{"run", "-d", "--name", "enclave-sleeper"}, flags...), podmanImage, "/app/prog.wasm", "sleep")...)
		s.waitLog(t, "enclave-sleeper", "sleeping")
		if res := s.run(t, "exec", "enclave-sleeper", "/app/prog.wasm", "args", "a b", "", "ü"); res.ExitCode != 0 || res.Stdout != "|a b||ü|\n" {
			t.Errorf("podman exec in the enclave: %s", res)
		}
		if res := s.run(t, "exec", "enclave-sleeper", "/app/prog.wasm", "exit", "6"); res.ExitCode != 6 {
			t.Errorf("podman exec exit status: %s, want 6", res)
		}
		s.must(t, "stop", "--time", "5", "enclave-sleeper")
		// SIGTERM cancels the wasm workload: 128+15.
		if code := s.exitCode(t, "enclave-sleeper"); code != 143 {
			t.Errorf("exit code after podman stop: %d, want 143", code)
		}
		s.must(t, "rm", "enclave-sleeper")
	})
}

// cgroupHierarchiesForPodman lists /sys/fs/cgroup and its subdirectories (the v1 hierarchies).
func cgroupHierarchiesForPodman() []string {
	dirs := []string{"/sys/fs/cgroup"}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return dirs
}
