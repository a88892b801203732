package pal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// The argv and env every version must pass through byte for byte.
var (
	trickyArgv = []string{
		"", "with space", `"double" 'single'`, `back\slash`, "tab\there",
		"new\nline", "ünïcødé ✓ 漢字", "--flag=a,b", "*", "$HOME", "",
	}
	trickyEnv = []string{
		"PLAIN=1", "SPACE=a b  c", "EMPTY=", "QUOTES=\"x\" 'y'", "UTF8=ωμέγα",
		"EQUALS=a=b=c", "NOEQUALS", "",
	}
)

// TestLifecycle drives every PAL API version through a whole container life
// (init, several programs, signals, report, destroy) and checks what the
// programs saw and the exact calls the PAL received.
func TestLifecycle(t *testing.T) {
	for v := 1; v <= 3; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			lib := loadRef(t, paltest.Options{Version: v})
			if lib.Version() != v {
				t.Fatalf("Version() = %d, want %d", lib.Version(), v)
			}
			trace := filepath.Join(t.TempDir(), "trace")
			// Runtime args arrive split at commas; pal_init gets them joined by spaces.
			mustInit(t, lib, "trace="+trace, "instance=/x", "k=v")

			// showargs: argv, env and stdio, exactly.
			_, wait := spawn(t, lib, enclave.Process{
				Path: showargs,
				Args: append([]string{"showargs"}, trickyArgv...),
				Env:  trickyEnv,
			}, "input\x00bytes\n")
			r := wait()
			if r.err != nil || r.code != 0 {
				t.Fatalf("showargs: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
			}
			argv, env, stdin := showargsOutput(t, r.stdout)
			if want := append([]string{"showargs"}, trickyArgv...); !reflect.DeepEqual(argv, want) {
				t.Errorf("argv = %q, want %q", argv, want)
			}
			if v == 1 {
				// v1 passes no environment: the program inherits the runelet's.
				if !slices.Contains(env, "PAL_TEST_INHERITED=from-runelet") {
					t.Errorf("v1 program env lacks the runelet's environment: %q", env)
				}
			} else if !reflect.DeepEqual(env, trickyEnv) {
				t.Errorf("env = %q, want %q", env, trickyEnv)
			}
			if stdin != "input\x00bytes\n" {
				// NUL inside stdin splits the showargs record; rejoin.
				if got := strings.Join(strings.SplitN(string(r.stdout), "STDIN\x00", 2)[1:], ""); got != "input\x00bytes\n\x00" {
					t.Errorf("stdin reached the program as %q", got)
				}
			}
			if string(r.stderr) != "showargs-stderr\n" {
				t.Errorf("stderr = %q", r.stderr)
			}

			// Exit codes pass through unchanged.
			for _, code := range []int{0, 3, 255} {
				_, wait := spawn(t, lib, enclave.Process{Path: "/bin/sh", Args: []string{"sh", "-c", "exit " + strconv.Itoa(code)}}, "")
				if r := wait(); r.err != nil || r.code != code {
					t.Errorf("exit %d: Wait = %d, %v", code, r.code, r.err)
				}
			}

			var sleepPID int
			if v >= 2 {
				// pal_kill reaches the process: SIGTERM gives 128+15.
				proc, wait := spawn(t, lib, enclave.Process{Path: "/bin/sleep", Args: []string{"sleep", "1000"}}, "")
				sleepPID = proc.(interface{ PID() int }).PID()
				if sleepPID <= 0 {
					t.Fatalf("PID() = %d after pal_create_process", sleepPID)
				}
				if err := proc.Signal(syscall.SIGTERM); err != nil {
					t.Fatalf("Signal: %v", err)
				}
				if r := wait(); r.err != nil || r.code != 128+int(syscall.SIGTERM) {
					t.Errorf("sleep killed by SIGTERM: Wait = %d, %v; want %d", r.code, r.err, 128+syscall.SIGTERM)
				}
				if err := proc.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
					t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
				}
			} else {
				proc, wait := spawn(t, lib, enclave.Process{Path: "/bin/true"}, "")
				if err := proc.Signal(syscall.SIGTERM); !errors.Is(err, errors.ErrUnsupported) {
					t.Errorf("v1 Signal = %v, want errors.ErrUnsupported", err)
				}
				if r := wait(); r.err != nil || r.code != 0 {
					t.Errorf("/bin/true: %d, %v", r.code, r.err)
				}
			}

			if v >= 3 {
				ti := make([]byte, pal.TargetInfoSize)
				copy(ti, "target")
				rep, err := lib.Report(ti)
				if err != nil {
					t.Fatalf("Report: %v", err)
				}
				if len(rep) != pal.ReportSize || !strings.Contains(string(rep), "SIMULATED") {
					t.Errorf("Report gave %d bytes %q, want a %d-byte SIMULATED report", len(rep), rep, pal.ReportSize)
				}
				again, _ := lib.Report(ti)
				if string(again) != string(rep) {
					t.Error("the simulated report is not deterministic")
				}
				if _, err := lib.Report(ti[:100]); !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "pal_get_local_report: -22 (invalid argument)") {
					t.Errorf("Report(100 bytes) = %v, want pal_get_local_report: -22 (invalid argument)", err)
				}
			} else if _, err := lib.Report(make([]byte, pal.TargetInfoSize)); !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("v%d Report = %v, want errors.ErrUnsupported", v, err)
			}

			if err := lib.Destroy(); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			if err := lib.Destroy(); err == nil {
				t.Error("second Destroy succeeded")
			}
			if _, err := lib.Spawn(context.Background(), enclave.Process{Path: "/bin/true"}); err == nil {
				t.Error("Spawn after Destroy succeeded")
			}

			checkSequence(t, v, readTrace(t, trace), trace, sleepPID)
		})
	}
}

func checkSequence(t *testing.T, v int, calls []traceCall, trace string, sleepPID int) {
	t.Helper()
	var want []string
	run := func() {
		if v == 1 {
			want = append(want, "pal_exec")
		} else {
			want = append(want, "pal_create_process", "pal_exec")
		}
	}
	want = append(want, "pal_get_version", "pal_init")
	for range 4 { // showargs, exit 0, 3, 255
		run()
	}
	switch v {
	case 1:
		run() // /bin/true
	default:
		run() // sleep
		want = append(want, "pal_kill")
	}
	if v >= 3 {
		want = append(want, "pal_get_local_report", "pal_get_local_report", "pal_get_local_report")
	}
	want = append(want, "pal_destroy")

	got := callNames(calls)
	// pal_exec runs on its own goroutine: for the killed sleep it may come
	// after pal_kill. Both must be there; their order is not the adapter's.
	if v >= 2 {
		if i := slices.Index(got, "pal_kill"); i > 0 && got[i-1] == "pal_create_process" && i+1 < len(got) && got[i+1] == "pal_exec" {
			got[i], got[i+1] = got[i+1], got[i]
		}
	}
	if !reflect.DeepEqual(got, want) {
		raw, _ := os.ReadFile(trace)
		t.Fatalf("PAL call sequence\n got %q\nwant %q\ntrace:\n%s", got, want, raw)
	}

	initCall := calls[1]
	if a := initCall.args["args"]; a != "trace="+trace+" instance=/x k=v" {
		t.Errorf("pal_init args = %q", a)
	}
	if l := initCall.args["log_level"]; l != "debug" {
		t.Errorf("pal_init log_level = %q", l)
	}
	if v >= 3 && (initCall.args["fd"] != "-1" || initCall.args["addr"] != "0x0") {
		t.Errorf("v3 pal_init: fd=%v addr=%v, want -1 and 0x0 (no pre-built enclave)", initCall.args["fd"], initCall.args["addr"])
	}
	first := calls[2]
	if p := first.args["path"]; p != showargs {
		t.Errorf("%s path = %q, want %q", first.name, p, showargs)
	}
	if a := first.args["argv"]; !reflect.DeepEqual(a, append([]string{"showargs"}, trickyArgv...)) {
		t.Errorf("%s argv = %q", first.name, a)
	}
	if v >= 2 {
		if e := first.args["env"]; !reflect.DeepEqual(e, trickyEnv) {
			t.Errorf("pal_create_process env = %q", e)
		}
		execs := 0
		for _, c := range calls {
			if c.name == "pal_kill" && (c.args["pid"] != strconv.Itoa(sleepPID) || c.args["sig"] != "15") {
				t.Errorf("%s, want pid=%d sig=15 (order pid, sig)", c.raw, sleepPID)
			}
			if c.name == "pal_exec" && c.args["pid"] == strconv.Itoa(sleepPID) {
				execs++
			}
		}
		if execs != 1 {
			t.Errorf("%d pal_exec calls for the pid pal_create_process returned (%d), want 1", execs, sleepPID)
		}
	}
}

// BenchmarkSpawnWait measures one program's round trip through a v2 PAL
// (pal_create_process, pal_exec, fork, exec, wait).
func BenchmarkSpawnWait(b *testing.B) {
	lib := loadRef(b, paltest.Options{Version: 2})
	if err := lib.Init(context.Background(), enclave.Config{}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		proc, err := lib.Spawn(context.Background(), enclave.Process{Path: "/bin/true"})
		if err != nil {
			b.Fatal(err)
		}
		if code, err := proc.Wait(); err != nil || code != 0 {
			b.Fatalf("Wait = %d, %v", code, err)
		}
	}
	if err := lib.Destroy(); err != nil {
		b.Fatal(err)
	}
}
