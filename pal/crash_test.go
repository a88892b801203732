package pal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/pal/palcrash"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// The test binary re-executes itself as a "runelet" that loads a PAL told to
// crash; TestMain hands such runs to runCrashChild.
const (
	crashLibEnv  = "PAL_TEST_CRASH_LIB"
	crashArgsEnv = "PAL_TEST_CRASH_ARGS"
	crashStepEnv = "PAL_TEST_CRASH_STEP"
	// crashReportEnv makes the child install ReportCrashes first, as the runelet does.
	crashReportEnv = "PAL_TEST_CRASH_REPORT"
)

// runCrashChild loads lib, initializes it with args and makes the call named
// by $PAL_TEST_CRASH_STEP. It returns (an exit code) only if nothing crashed.
func runCrashChild(lib, args string) int {
	ctx := context.Background()
	if os.Getenv(crashReportEnv) != "" {
		if err := pal.ReportCrashes("palchild"); err != nil {
			fmt.Fprintln(os.Stderr, "report crashes:", err)
			return 6
		}
		if !goFaultsStillPanic() {
			fmt.Fprintln(os.Stderr, "a Go nil dereference no longer panics")
			return 7
		}
	}
	l, err := pal.Load(lib)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 3
	}
	if err := l.Init(ctx, enclave.Config{Args: strings.Fields(args)}); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 4
	}
	switch os.Getenv(crashStepEnv) {
	case "spawn":
		proc, err := l.Spawn(ctx, enclave.Process{Path: "/bin/true"})
		if err == nil {
			_, err = proc.Wait()
		}
		fmt.Fprintln(os.Stderr, "spawn:", err)
	case "kill":
		// cat ends when this process dies and takes the pipe's write end
		// with it: the crash leaves no orphan behind.
		r, w, err := os.Pipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "pipe:", err)
			return 5
		}
		defer w.Close()
		proc, err := l.Spawn(ctx, enclave.Process{Path: "/bin/cat", Stdin: r})
		r.Close()
		if err == nil {
			err = proc.Signal(syscall.SIGTERM)
		}
		fmt.Fprintln(os.Stderr, "kill:", err)
	case "report":
		_, err := l.Report(make([]byte, pal.TargetInfoSize))
		fmt.Fprintln(os.Stderr, "report:", err)
	case "destroy":
		fmt.Fprintln(os.Stderr, "destroy:", l.Destroy())
	}
	return 0
}

// TestPALCrashIsolated runs PALs that dereference NULL in one call each, in a
// child process (as rune runs PALs only in the runelet), and checks that the
// child dies of it and that its crash report names the signal and the call.
func TestPALCrashIsolated(t *testing.T) {
	for _, tc := range []struct {
		version    int
		call       string
		step       string
		buildTime  bool // crash configured at build time (pal_get_version runs before init args)
		traceback  string
		wantSignal syscall.Signal // 0: Go's crash exit, status 2
	}{
		{version: 3, call: "pal_get_version", buildTime: true},
		{version: 1, call: "pal_init"},
		{version: 2, call: "pal_init"},
		{version: 3, call: "pal_init"},
		{version: 3, call: "pal_init", traceback: "crash", wantSignal: syscall.SIGABRT},
		{version: 1, call: "pal_exec", step: "spawn"},
		{version: 2, call: "pal_create_process", step: "spawn"},
		{version: 2, call: "pal_exec", step: "spawn"},
		{version: 3, call: "pal_kill", step: "kill"},
		{version: 3, call: "pal_get_local_report", step: "report"},
		{version: 2, call: "pal_destroy", step: "destroy"},
	} {
		name := fmt.Sprintf("v%d/%s", tc.version, tc.call)
		if tc.traceback != "" {
			name += "/GOTRACEBACK=" + tc.traceback
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts := paltest.Options{Version: tc.version}
			args := "crash=" + tc.call
			if tc.buildTime {
				opts.Crash, args = tc.call, ""
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(),
				crashLibEnv+"="+refPath(t, opts),
				crashArgsEnv+"="+args,
				crashStepEnv+"="+tc.step,
				"GOTRACEBACK="+tc.traceback,
			)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()

			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("child survived a crash in %s: %v\nstderr:\n%s", tc.call, err, stderr.String())
			}
			ws := exitErr.Sys().(syscall.WaitStatus)
			if tc.wantSignal != 0 {
				if !ws.Signaled() || ws.Signal() != tc.wantSignal {
					t.Fatalf("child ended with %v, want death by %v", exitErr, tc.wantSignal)
				}
			} else if !ws.Exited() || ws.ExitStatus() != 2 {
				t.Fatalf("child ended with %v, want the Go runtime's crash exit (status 2)", exitErr)
			}

			crash, ok := palcrash.Parse([]byte(stderr.String()))
			if !ok {
				t.Fatalf("no crash report in the child's stderr:\n%s", stderr.String())
			}
			if crash.Signal != "SIGSEGV" || !crash.InCgo || crash.Call != tc.call {
				t.Fatalf("palcrash.Parse = %+v, want SIGSEGV in cgo in %s\nstderr:\n%s", *crash, tc.call, stderr.String())
			}
			want := "enclave runtime crashed in " + tc.call + ": SIGSEGV: segmentation violation"
			if crash.Error() != want {
				t.Errorf("crash error = %q, want %q", crash.Error(), want)
			}
		})
	}
}
