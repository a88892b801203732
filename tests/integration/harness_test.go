// Package integration drives the rune binary as Docker and containerd's shim would, side by side with
// runc, and checks that enclave containers behave like ordinary ones from the outside. It needs root.
package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// runtimeBin is one OCI runtime under test with a state root of its own.
type runtimeBin struct {
	name, path, root string
}

func repoRoot(t testing.TB) string {
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

// needRoot fails in CI and skips elsewhere: these tests must never be skipped silently in CI.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("integration tests need root; CI runs them as root")
	}
	t.Skip("integration tests need root")
}

func rune(t testing.TB) *runtimeBin {
	t.Helper()
	needRoot(t)
	p := os.Getenv("RUNE_BINARY")
	if p == "" {
		p = filepath.Join(repoRoot(t), "bin", "rune")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("rune binary %s: %v (run make build)", p, err)
	}
	if os.Getenv("RUNE_RUNELET") == "" {
		t.Setenv("RUNE_RUNELET", filepath.Join(filepath.Dir(p), "init-runelet"))
	}
	return &runtimeBin{name: "rune", path: p, root: t.TempDir()}
}

func runc(t testing.TB) *runtimeBin {
	t.Helper()
	needRoot(t)
	p, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc is required (apt-get install runc): %v", err)
	}
	return &runtimeBin{name: "runc", path: p, root: t.TempDir()}
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the runtime with args; stdin is empty. Every call is bounded in time.
func (r *runtimeBin) run(t testing.TB, args ...string) result {
	t.Helper()
	return r.runIn(t, "", args...)
}

func (r *runtimeBin) runIn(t testing.TB, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.path, append([]string{"--root", r.root}, args...)...)
	cmd.Dir = dir
	// Files, not pipes: a detached container keeps its stdio open, and a pipe would never reach EOF.
	outF, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	err = cmd.Run()
	out, _ := os.ReadFile(outF.Name())
	errb, _ := os.ReadFile(errF.Name())
	res := result{stdout: string(out), stderr: string(errb)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", r.name, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out", r.name, args)
	}
	return res
}

// state returns the runtime's state JSON for id.
func (r *runtimeBin) state(t testing.TB, id string) map[string]any {
	t.Helper()
	res := r.run(t, "state", id)
	if res.code != 0 {
		t.Fatalf("%s state %s: %d %s", r.name, id, res.code, res.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &m); err != nil {
		t.Fatalf("%s state %s: %v\n%s", r.name, id, err, res.stdout)
	}
	return m
}

// cleanupContainers force-deletes whatever is left in the runtime's root.
func (r *runtimeBin) cleanup(t testing.TB) {
	t.Cleanup(func() {
		res := r.run(t, "list", "-q")
		for _, id := range strings.Fields(res.stdout) {
			r.run(t, "delete", "-f", id)
		}
	})
}

// bundle makes a busybox bundle whose process runs args.
func bundle(t testing.TB, args ...string) (string, *specs.Spec) {
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
	for _, a := range []string{"sh", "echo", "cat", "sleep", "true", "false", "id", "ls", "env", "kill", "hostname"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(rootfs, "etc", "hostname"), []byte("integration\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc", "group"), []byte("root:x:0:\n"), 0o644)
	spec := defaultSpec(t)
	spec.Process.Terminal = false
	spec.Process.Args = args
	writeSpec(t, dir, spec)
	return dir, spec
}

var specCache []byte

// defaultSpec is runc's own `spec` output, so both runtimes get a config runc considers normal.
func defaultSpec(t testing.TB) *specs.Spec {
	t.Helper()
	if specCache == nil {
		dir := t.TempDir()
		cmd := exec.Command("runc", "spec", "-b", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("runc spec: %v %s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		specCache = b
	}
	var s specs.Spec
	if err := json.Unmarshal(specCache, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func writeSpec(t testing.TB, dir string, s *specs.Spec) {
	t.Helper()
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls the runtime's state until id has status want.
func (r *runtimeBin) waitStatus(t testing.TB, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := r.state(t, id)
		if st["status"] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s status %v, want %s", r.name, id, st["status"], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
