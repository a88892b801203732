// Package harness drives the rune and runc binaries the way Docker and containerd's shim do, for the
// suites under tests/ that need real containers (tests/security first). It builds bundles from the
// host's busybox-static, runs each command bounded in time with stdio in files, and checks that
// nothing of a container is left behind. It needs root; in CI (CI=true) a missing prerequisite
// fails the test instead of skipping it.
package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Runtime is one OCI runtime binary under test with a state root of its own.
type Runtime struct {
	Name, Path, Root string
	// Env is added to the environment of every command (for example RUNE_CACHE_DIR).
	Env []string
}

// Result is what one runtime command did.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// RepoRoot is the module root (the directory holding go.mod) above the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// NeedRoot fails in CI and skips elsewhere: these tests must never be skipped silently in CI.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root; CI runs it as root")
	}
	t.Skip("this test needs root")
}

// Rune is the rune binary of this build ($RUNE_BINARY, else bin/rune), with init-runelet beside it.
func Rune(t testing.TB) *Runtime {
	t.Helper()
	NeedRoot(t)
	p := os.Getenv("RUNE_BINARY")
	if p == "" {
		p = filepath.Join(RepoRoot(t), "bin", "rune")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("rune binary %s: %v (run make build)", p, err)
	}
	r := &Runtime{Name: "rune", Path: p, Root: t.TempDir()}
	runelet := os.Getenv("RUNE_RUNELET")
	if runelet == "" {
		runelet = filepath.Join(filepath.Dir(p), "init-runelet")
	}
	r.Env = append(r.Env, "RUNE_RUNELET="+runelet)
	return r
}

// Runc is the host's runc.
func Runc(t testing.TB) *Runtime {
	t.Helper()
	NeedRoot(t)
	p, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc is required (apt-get install runc): %v", err)
	}
	return &Runtime{Name: "runc", Path: p, Root: t.TempDir()}
}

// Run runs the runtime with args and an empty stdin, bounded by two minutes.
func (r *Runtime) Run(t testing.TB, args ...string) Result {
	t.Helper()
	return r.RunIn(t, "", args...)
}

// RunIn is Run in working directory dir.
func (r *Runtime) RunIn(t testing.TB, dir string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, append([]string{"--root", r.Root}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), r.Env...)
	// Files, not pipes: a detached container keeps its stdio open, and a pipe would never reach EOF.
	tmp := t.TempDir()
	outF, err := os.Create(filepath.Join(tmp, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(filepath.Join(tmp, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	err = cmd.Run()
	out, _ := os.ReadFile(outF.Name())
	errb, _ := os.ReadFile(errF.Name())
	res := Result{Stdout: string(out), Stderr: string(errb)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", r.Name, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out", r.Name, args)
	}
	return res
}

// Must runs args and fails t unless the command exits 0.
func (r *Runtime) Must(t testing.TB, args ...string) Result {
	t.Helper()
	res := r.Run(t, args...)
	if res.Code != 0 {
		t.Fatalf("%s %v: exit %d\nstdout: %s\nstderr: %s", r.Name, args, res.Code, res.Stdout, res.Stderr)
	}
	return res
}

// State returns the runtime's state JSON for id.
func (r *Runtime) State(t testing.TB, id string) map[string]any {
	t.Helper()
	res := r.Must(t, "state", id)
	var m map[string]any
	if err := json.Unmarshal([]byte(res.Stdout), &m); err != nil {
		t.Fatalf("%s state %s: %v\n%s", r.Name, id, err, res.Stdout)
	}
	return m
}

// WaitStatus polls the runtime's state until id has status want.
func (r *Runtime) WaitStatus(t testing.TB, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := r.State(t, id)
		if st["status"] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s status %v, want %s", r.Name, id, st["status"], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Cleanup force-deletes whatever is left in the runtime's root when the test ends.
func (r *Runtime) Cleanup(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		res := r.Run(t, "list", "-q")
		for _, id := range strings.Fields(res.Stdout) {
			r.Run(t, "delete", "-f", id)
		}
	})
}

// BusyboxApplets are linked to /bin/busybox in every Bundle.
var BusyboxApplets = []string{"sh", "echo", "cat", "sleep", "true", "false", "id", "ls", "env", "kill",
	"hostname", "mount", "umount", "touch", "stat", "sha256sum", "cp", "mkdir", "head", "grep", "wc", "dd", "chmod", "nc"}

// Bundle makes a busybox bundle in a fresh directory whose process runs args; the rootfs is
// writable and the process has no terminal. It returns the bundle directory and its spec (already
// written; write it again with WriteSpec after changing it).
func Bundle(t testing.TB, args ...string) (string, *specs.Spec) {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "app", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range BusyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"etc/hostname": "harness\n",
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
		"etc/group":    "root:x:0:\nnogroup:x:65534:\n",
	} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := DefaultSpec(t)
	spec.Process.Terminal = false
	spec.Process.Args = args
	spec.Root.Readonly = false
	WriteSpec(t, dir, spec)
	return dir, spec
}

var (
	specOnce sync.Once
	specJSON []byte
	specErr  error
)

// DefaultSpec is runc's own `spec` output, so every runtime gets a config runc considers normal.
func DefaultSpec(t testing.TB) *specs.Spec {
	t.Helper()
	specOnce.Do(func() {
		dir, err := os.MkdirTemp("", "harness-spec")
		if err != nil {
			specErr = err
			return
		}
		defer os.RemoveAll(dir)
		if out, err := exec.Command("runc", "spec", "-b", dir).CombinedOutput(); err != nil {
			specErr = errors.New("runc spec: " + err.Error() + ": " + string(out))
			return
		}
		specJSON, specErr = os.ReadFile(filepath.Join(dir, "config.json"))
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	var s specs.Spec
	if err := json.Unmarshal(specJSON, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// WriteSpec writes s as dir/config.json.
func WriteSpec(t testing.TB, dir string, s *specs.Spec) {
	t.Helper()
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// WriteRootfsFile writes data at rel inside the bundle's rootfs, creating directories.
func WriteRootfsFile(t testing.TB, bundle, rel string, data []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(bundle, "rootfs", rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// BuildGo builds the Go package pkg (a path relative to the module root, such as
// "./tests/integration/testdata/enclaveprog") for goos/goarch with cgo off, once per test binary,
// and returns the binary's path.
func BuildGo(t testing.TB, pkg, goos, goarch string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + "|" + goos + "|" + goarch
	if p, ok := buildCache[key]; ok {
		return p
	}
	dir, err := BinaryTempDir("harness-build")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s for %s/%s: %v\n%s", pkg, goos, goarch, err, b)
	}
	buildCache[key] = out
	return out
}

// AssertNothingLeft checks that no trace of container id remains: state directory, cgroups, mounts
// of its bundle, processes running from its rootfs.
func AssertNothingLeft(t testing.TB, r *Runtime, id, bundle string) {
	t.Helper()
	if id != "" && !strings.ContainsAny(id, "/") && id != ".." {
		if _, err := os.Lstat(filepath.Join(r.Root, id)); err == nil {
			t.Errorf("%s: state directory %s left behind", r.Name, filepath.Join(r.Root, id))
		}
		// runc's default cgroupsPath is empty, so cgroups are named after the id under the root.
		for _, pattern := range []string{"/sys/fs/cgroup/*/" + id, "/sys/fs/cgroup/" + id, "/sys/fs/cgroup/unified/" + id} {
			matches, _ := filepath.Glob(pattern)
			for _, m := range matches {
				t.Errorf("%s: cgroup %s left behind", r.Name, m)
			}
		}
	}
	if bundle != "" {
		if f, err := os.Open("/proc/self/mountinfo"); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.Contains(sc.Text(), bundle) {
					t.Errorf("%s: mount left behind: %s", r.Name, sc.Text())
				}
			}
			f.Close()
		}
		rootfs := filepath.Join(bundle, "rootfs")
		procs, _ := filepath.Glob("/proc/[0-9]*/root")
		for _, p := range procs {
			if target, err := os.Readlink(p); err == nil && (target == rootfs || strings.HasPrefix(target, rootfs+"/")) {
				cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
				t.Errorf("%s: process %s left running in the container: %q", r.Name, filepath.Dir(p), cmd)
			}
		}
	}
}
