package wasm

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// startSleeper spawns the sleeper in mode and returns once it has printed "ready".
func startSleeper(t *testing.T, rt enclave.Runtime, mode string) enclave.Proc {
	t.Helper()
	out, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The stdin pipe's write end stays open, so a read on stdin blocks until the process ends.
	in, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close(); outW.Close(); in.Close(); inW.Close() })
	proc, err := rt.Spawn(context.Background(), enclave.Process{
		Path: "/app/sleeper.wasm", Args: []string{"sleeper", mode}, Stdin: in, Stdout: outW, Stderr: outW,
	})
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("sleeper said %q, %v", line, err)
	}
	return proc
}

func TestSignalStopsWithStatus(t *testing.T) {
	rt := newRuntime(t, newRootfs(t), nil)
	for _, mode := range []string{"spin", "sleep", "stdin"} {
		for _, tt := range []struct {
			sig  syscall.Signal
			want int
		}{
			{syscall.SIGTERM, 143},
			{syscall.SIGKILL, 137},
			{syscall.SIGINT, 130},
			{syscall.SIGHUP, 129},
		} {
			t.Run(mode+"/"+tt.sig.String(), func(t *testing.T) {
				proc := startSleeper(t, rt, mode)
				if err := proc.Signal(tt.sig); err != nil {
					t.Fatalf("Signal: %v", err)
				}
				status, err := proc.Wait()
				if err != nil || status != tt.want {
					t.Errorf("Wait = %d, %v; want %d", status, err, tt.want)
				}
				if err := proc.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
					t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
				}
			})
		}
	}
}

func TestSignalDefaultActions(t *testing.T) {
	rt := newRuntime(t, newRootfs(t), nil)
	proc := startSleeper(t, rt, "sleep")
	for _, sig := range []syscall.Signal{0, syscall.SIGWINCH, syscall.SIGCHLD, syscall.SIGURG, syscall.SIGCONT} {
		if err := proc.Signal(sig); err != nil {
			t.Errorf("Signal(%d): %v", sig, err)
		}
	}
	if err := proc.Signal(syscall.SIGSTOP); err == nil || !strings.Contains(err.Error(), "cannot stop") {
		t.Errorf("Signal(SIGSTOP): %v", err)
	}
	if err := proc.Signal(syscall.Signal(99)); err == nil {
		t.Error("Signal(99) succeeded")
	}
	// Still running after all of that: signal 0 says so, and SIGTERM is what stops it.
	if err := proc.Signal(0); err != nil {
		t.Errorf("Signal(0) on a running process: %v", err)
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status, _ := proc.Wait(); status != 143 {
		t.Errorf("status %d, want 143", status)
	}
}

func TestConcurrentInstancesAndDestroy(t *testing.T) {
	rt := New()
	if err := rt.Init(context.Background(), enclave.Config{Type: "sim", Rootfs: newRootfs(t), CacheDir: sharedCacheDir}); err != nil {
		t.Fatal(err)
	}
	// Two instances of one module run side by side (each Spawn is a fresh instance).
	a := startSleeper(t, rt, "spin")
	b := startSleeper(t, rt, "sleep")
	if err := a.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if status, _ := a.Wait(); status != 130 {
		t.Errorf("first instance: status %d, want 130", status)
	}
	if err := b.Signal(0); err != nil {
		t.Errorf("second instance stopped with the first: %v", err)
	}
	// Destroy kills what still runs.
	if err := rt.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if status, _ := b.Wait(); status != 137 {
		t.Errorf("after Destroy: status %d, want 137", status)
	}
	if _, err := rt.Spawn(context.Background(), enclave.Process{Path: "/app/hello.wasm"}); err == nil || !strings.Contains(err.Error(), "destroyed") {
		t.Errorf("Spawn after Destroy: %v", err)
	}
	if err := rt.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}
