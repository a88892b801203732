package pal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// TestPALErrorsSurface injects a failure into each PAL call (the reference
// PAL's fail=CALL:ERRNO init arg) and checks that the Go error names the call
// and the errno, and unwraps to it.
func TestPALErrorsSurface(t *testing.T) {
	for _, tc := range []struct {
		version int
		fail    string
		want    string
		errno   syscall.Errno
	}{
		{1, "pal_init:22", "pal_init: -22 (invalid argument)", syscall.EINVAL},
		{2, "pal_init:22", "pal_init: -22 (invalid argument)", syscall.EINVAL},
		{3, "pal_init:22", "pal_init: -22 (invalid argument)", syscall.EINVAL},
		{1, "pal_exec:8", "pal_exec: -8 (exec format error)", syscall.ENOEXEC},
		{2, "pal_create_process:12", "pal_create_process: -12 (cannot allocate memory)", syscall.ENOMEM},
		{2, "pal_exec:5", "pal_exec: -5 (input/output error)", syscall.EIO},
		{3, "pal_kill:1", "pal_kill: -1 (operation not permitted)", syscall.EPERM},
		{3, "pal_get_local_report:38", "pal_get_local_report: -38 (function not implemented)", syscall.ENOSYS},
		{2, "pal_destroy:16", "pal_destroy: -16 (device or resource busy)", syscall.EBUSY},
	} {
		call, _, _ := strings.Cut(tc.fail, ":")
		t.Run(fmt.Sprintf("v%d/%s", tc.version, call), func(t *testing.T) {
			t.Parallel()
			lib := loadRef(t, paltest.Options{Version: tc.version})
			trace := filepath.Join(t.TempDir(), "trace")
			err := lib.Init(context.Background(), enclave.Config{Args: []string{"trace=" + trace, "fail=" + tc.fail}})
			if call != "pal_init" {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				err = failingCall(t, lib, call)
			}
			checkCallError(t, err, tc.want, tc.errno)
			if call == "pal_init" {
				// A failed pal_init leaves nothing to destroy or run.
				if err := lib.Destroy(); err == nil || !strings.Contains(err.Error(), "not initialized") {
					t.Errorf("Destroy after failed Init = %v", err)
				}
				if _, err := lib.Spawn(context.Background(), enclave.Process{Path: "/bin/true"}); err == nil {
					t.Error("Spawn after failed Init succeeded")
				}
				if got := callNames(readTrace(t, trace)); !reflect.DeepEqual(got, []string{"pal_get_version", "pal_init"}) {
					t.Errorf("calls after failed pal_init: %q", got)
				}
			}
		})
	}
}

// failingCall makes the call that was told to fail and returns its error.
func failingCall(t *testing.T, lib *pal.Library, call string) error {
	t.Helper()
	switch call {
	case "pal_exec":
		proc, wait := spawn(t, lib, enclave.Process{Path: "/bin/true"}, "")
		code, err := proc.Wait()
		if code != -1 {
			t.Errorf("Wait code after pal_exec failed = %d, want -1", code)
		}
		// The created process still holds its stdio until pal_destroy.
		must(t, lib.Destroy())
		wait()
		return err
	case "pal_create_process":
		_, err := lib.Spawn(context.Background(), enclave.Process{Path: "/bin/true"})
		must(t, lib.Destroy())
		return err
	case "pal_kill":
		proc, wait := spawnSleeper(t, lib)
		err := proc.Signal(syscall.SIGTERM)
		must(t, lib.Destroy()) // SIGKILLs the sleep
		if code, err := wait(); code != 128+int(syscall.SIGKILL) {
			t.Errorf("sleep after pal_destroy: Wait = %d, %v; want %d", code, err, 128+syscall.SIGKILL)
		}
		return err
	case "pal_get_local_report":
		_, err := lib.Report(make([]byte, pal.TargetInfoSize))
		must(t, lib.Destroy())
		return err
	case "pal_destroy":
		return lib.Destroy()
	}
	t.Fatalf("no way to make %s fail", call)
	return nil
}

func checkCallError(t *testing.T, err error, want string, errno syscall.Errno) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", err, want)
	}
	if !errors.Is(err, errno) {
		t.Errorf("errors.Is(%v, %v) = false", err, errno)
	}
	var ce *pal.CallError
	if !errors.As(err, &ce) || ce.Code != -int(errno) {
		t.Errorf("error %v is not a *pal.CallError with code %d", err, -int(errno))
	}
}

// TestPALRealErrors checks failures the reference PAL meets for real, not by
// injection.
func TestPALRealErrors(t *testing.T) {
	noexec := filepath.Join(t.TempDir(), "noexec")
	must(t, os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644))
	for v := 1; v <= 3; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			lib := loadRef(t, paltest.Options{Version: v})
			err := lib.Init(context.Background(), enclave.Config{Args: []string{"trace=/nonexistent-dir/trace"}})
			checkCallError(t, err, "pal_init: -2 (no such file or directory)", syscall.ENOENT)

			lib = loadRef(t, paltest.Options{Version: v})
			mustInit(t, lib)
			for _, tc := range []struct {
				path  string
				want  string
				errno syscall.Errno
			}{
				{"/nonexistent/program", "-2 (no such file or directory)", syscall.ENOENT},
				{noexec, "-13 (permission denied)", syscall.EACCES},
			} {
				proc, err := lib.Spawn(context.Background(), enclave.Process{Path: tc.path})
				call := "pal_create_process"
				if v == 1 { // v1 learns it from the blocking pal_exec
					call = "pal_exec"
					if err != nil {
						t.Fatalf("v1 Spawn: %v", err)
					}
					_, err = proc.Wait()
				}
				checkCallError(t, err, call+": "+tc.want, tc.errno)
			}
			must(t, lib.Destroy())
		})
	}
}

func TestPALFailureFromEnvironment(t *testing.T) {
	// Also reaches pal_get_version, which runs before pal_init has args.
	t.Setenv("REFERENCE_PAL_FAIL", "pal_get_version:95")
	_, err := pal.Load(refPath(t, paltest.Options{Version: 3}))
	checkCallError(t, err, "pal_get_version: -95 (operation not supported)", syscall.EOPNOTSUPP)
}

func TestDestroyEndsRunningPrograms(t *testing.T) {
	for v := 1; v <= 3; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			lib := loadRef(t, paltest.Options{Version: v})
			mustInit(t, lib)
			var waits []func() (int, error)
			for range 2 {
				_, wait := spawnSleeper(t, lib)
				waits = append(waits, wait)
			}
			must(t, lib.Destroy())
			for _, wait := range waits {
				if code, err := wait(); err != nil || code != 128+int(syscall.SIGKILL) {
					t.Errorf("sleep after Destroy: Wait = %d, %v; want %d", code, err, 128+syscall.SIGKILL)
				}
			}
		})
	}
}

func TestConcurrentProcessesAndSignals(t *testing.T) {
	lib := loadRef(t, paltest.Options{Version: 3})
	mustInit(t, lib)
	sigs := []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGKILL, syscall.SIGHUP}
	type started struct {
		proc enclave.Proc
		wait func() run
	}
	var procs []started
	for range sigs {
		proc, wait := spawn(t, lib, enclave.Process{Path: "/bin/sleep", Args: []string{"sleep", "1000"}}, "")
		procs = append(procs, started{proc, wait})
	}
	done := make(chan error, len(sigs))
	for i, sig := range sigs {
		go func() { done <- procs[i].proc.Signal(sig) }()
		go func() {
			_, err := lib.Report(make([]byte, pal.TargetInfoSize))
			done <- err
		}()
	}
	for range 2 * len(sigs) {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	for i, sig := range sigs {
		if r := procs[i].wait(); r.err != nil || r.code != 128+int(sig) {
			t.Errorf("sleep killed by %v: Wait = %d, %v; want %d", sig, r.code, r.err, 128+int(sig))
		}
	}
	must(t, lib.Destroy())
}

func TestInitChecks(t *testing.T) {
	lib := loadRef(t, paltest.Options{Version: 2})
	ctx := context.Background()
	if _, err := lib.Spawn(ctx, enclave.Process{Path: "/bin/true"}); err == nil || !strings.Contains(err.Error(), "not initialized") {
		t.Errorf("Spawn before Init = %v", err)
	}
	if _, err := lib.Measurement(enclave.Process{Path: "/bin/true"}); err == nil {
		t.Error("Measurement before Init succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := lib.Init(cancelled, enclave.Config{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Init with a cancelled context = %v", err)
	}
	other := refPath(t, paltest.Options{Version: 2})
	if err := lib.Init(ctx, enclave.Config{RuntimePath: other}); err == nil || !strings.Contains(err.Error(), "is loaded") {
		t.Errorf("Init naming another PAL = %v", err)
	}
	if err := lib.Init(ctx, enclave.Config{RuntimePath: lib.Path()}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := lib.Init(ctx, enclave.Config{}); err == nil || !strings.Contains(err.Error(), "already initialized") {
		t.Errorf("second Init = %v", err)
	}
	for _, p := range []enclave.Process{
		{},
		{Path: "/bin/true", Args: []string{"a\x00b"}},
		{Path: "/bin/true", Env: []string{"A=\x00"}},
	} {
		if _, err := lib.Spawn(ctx, p); err == nil {
			t.Errorf("Spawn(path %q, argv %q, env %q) succeeded", p.Path, p.Args, p.Env)
		}
	}
	must(t, lib.Destroy())
}

// TestCallErrorKind: a PAL call's failure is enclave.ErrPAL, and keeps that kind across the
// agent protocol (enclave.KindOf).
func TestCallErrorKind(t *testing.T) {
	err := fmt.Errorf("start: %w", &pal.CallError{Call: "pal_exec", Code: -22})
	if !errors.Is(err, enclave.ErrPAL) || !errors.Is(err, syscall.EINVAL) || errors.Is(err, enclave.ErrNotFound) {
		t.Errorf("%v", err)
	}
	if k, _ := enclave.KindOf(err); k != enclave.KindPAL {
		t.Errorf("KindOf = %q", k)
	}
}
