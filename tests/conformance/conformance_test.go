package conformance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// TestOCIConformance runs run.sh with RUNE_BINARY as the candidate and runc
// (or REFERENCE_RUNTIME) as the reference, streaming its report to t.Log.
// It needs root and a built rune; without them it skips on a developer
// machine but fails under CI=true, where a skipped gate would pass silently.
func TestOCIConformance(t *testing.T) {
	candidate := os.Getenv("RUNE_BINARY")
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run as uid 0)")
	}
	if candidate == "" {
		missing = append(missing, "RUNE_BINARY (path to a built rune, e.g. make build && RUNE_BINARY=$PWD/bin/rune)")
	} else if _, err := os.Stat(candidate); err != nil {
		missing = append(missing, "a rune binary at RUNE_BINARY: "+err.Error())
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("OCI conformance gate cannot run under CI: missing %v", missing)
		}
		t.Skipf("OCI conformance gate needs %v", missing)
	}
	// The suite's cgroup tests use cgroupsPath /testdir/cgrouptest; the runtimes remove
	// cgrouptest, not the parent the path made.
	clients.RemoveEmptyCgroupsAtEnd(t, "testdir")
	candidate, err := filepath.Abs(candidate)
	if err != nil {
		t.Fatalf("resolve RUNE_BINARY: %v", err)
	}

	reference := os.Getenv("REFERENCE_RUNTIME")
	if reference == "" {
		reference = "runc"
	}
	referencePath, err := exec.LookPath(reference)
	if err != nil {
		t.Fatalf("reference runtime %q not found (apt-get install runc): %v", reference, err)
	}

	// Leave a minute before the go test deadline so that run.sh can clean
	// up its containers and report instead of being killed mid-run.
	ctx := context.Background()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Minute))
		defer cancel()
	}

	script, err := filepath.Abs("run.sh")
	if err != nil {
		t.Fatalf("locate run.sh: %v", err)
	}
	cmd := exec.CommandContext(ctx, "bash", script, candidate, referencePath)
	// run.sh starts a process tree (xargs, validation programs, runtimes);
	// on timeout stop the whole group with SIGTERM so its EXIT trap runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second

	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start run.sh: %v", err)
	}
	streamed := make(chan struct{})
	go func() {
		defer close(streamed)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		// Drain whatever is left so run.sh never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, pr)
	}()
	waitErr := cmd.Wait()
	pw.Close()
	<-streamed

	if ctx.Err() != nil {
		t.Fatalf("run.sh did not finish before the test deadline (raise go test -timeout): %v", waitErr)
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exitErr) && exitErr.ExitCode() == 1:
		t.Fatalf("rune fails OCI validation programs that runc passes (see REGRESSION lines above)")
	default:
		t.Fatalf("run.sh failed: %v", waitErr)
	}
}
