package pal_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/pal/palcrash"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// goFaultsStillPanic checks that, with the crash reporter installed, a fault in Go code is still
// the Go runtime's business: a nil dereference panics and can be recovered.
func goFaultsStillPanic() (ok bool) {
	defer func() { ok = recover() != nil }()
	var p *int
	fmt.Fprint(os.Stderr, *p)
	return false
}

// TestPALCrashReported: with ReportCrashes installed (as the runelet does), a PAL that faults in
// any call ends the process by the signal itself, with exactly one line on stderr naming the call,
// and no Go trace (which would land in the workload's stderr once the workload runs).
func TestPALCrashReported(t *testing.T) {
	for _, tc := range []struct {
		version   int
		call      string
		step      string
		buildTime bool
	}{
		{version: 3, call: "pal_get_version", buildTime: true},
		{version: 3, call: "pal_init"},
		{version: 1, call: "pal_exec", step: "spawn"},
		{version: 3, call: "pal_create_process", step: "spawn"},
		{version: 3, call: "pal_exec", step: "spawn"},
		{version: 3, call: "pal_kill", step: "kill"},
		{version: 3, call: "pal_get_local_report", step: "report"},
		{version: 2, call: "pal_destroy", step: "destroy"},
	} {
		t.Run(fmt.Sprintf("v%d/%s", tc.version, tc.call), func(t *testing.T) {
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
				crashReportEnv+"=1",
			)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("child survived a crash in %s: %v\nstderr:\n%s", tc.call, err, stderr.String())
			}
			if ws := exitErr.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGSEGV || ws.CoreDump() {
				t.Fatalf("child ended with %v (core dump %v), want death by SIGSEGV without a core", exitErr, ws.CoreDump())
			}
			want := "palchild: enclave runtime crashed in " + tc.call + ": SIGSEGV: segmentation violation\n"
			if stderr.String() != want {
				t.Fatalf("stderr:\n%s\nwant exactly:\n%s", stderr.String(), want)
			}
			c, ok := palcrash.Parse([]byte(stderr.String()))
			if !ok || c.Call != tc.call || c.Signal != "SIGSEGV" || !c.InCgo {
				t.Errorf("palcrash.Parse = %+v, %v", c, ok)
			}
		})
	}
}
