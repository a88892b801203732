package critest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

func result(handler string, states map[string]string) *Result {
	r := &Result{Handler: handler, Specs: map[string]Spec{}}
	for n, s := range states {
		r.Specs[n] = Spec{State: s, Failure: "why " + n}
	}
	return r
}

func TestGate(t *testing.T) {
	containerPID := Exceptions[0].Spec
	runc := result(cri.HandlerRunc, map[string]string{"a": "passed", "b": "failed", "c": "skipped", containerPID: "passed"})
	tests := []struct {
		name  string
		other *Result
		want  []string // one substring per expected problem
	}{
		{"same", result(cri.HandlerRune, map[string]string{"a": "passed", "b": "failed", "c": "skipped", containerPID: "passed"}), nil},
		{"exception holds", result(cri.HandlerSimNative, map[string]string{"a": "passed", "b": "failed", "c": "skipped", containerPID: "failed"}), nil},
		// The exception is for rune-sim-native only: plain rune must match runc there too.
		{"exception of another handler", result(cri.HandlerRune, map[string]string{"a": "passed", "b": "failed", "c": "skipped", containerPID: "failed"}),
			[]string{"runc passed, rune failed"}},
		{"stale exception", result(cri.HandlerSimNative, map[string]string{"a": "passed", "b": "failed", "c": "skipped", containerPID: "passed"}),
			[]string{"exception no longer holds"}},
		{"fails where runc passes", result(cri.HandlerRune, map[string]string{"a": "failed", "b": "failed", "c": "skipped", containerPID: "passed"}),
			[]string{"runc passed, rune failed: a: why a"}},
		// Passing where runc fails or skips is a difference too: the reason must be understood.
		{"passes where runc fails", result(cri.HandlerRune, map[string]string{"a": "passed", "b": "passed", "c": "skipped", containerPID: "passed"}),
			[]string{"runc failed, rune passed: b"}},
		{"runs what runc skips", result(cri.HandlerRune, map[string]string{"a": "passed", "b": "failed", "c": "passed", containerPID: "passed"}),
			[]string{"runc skipped, rune passed: c"}},
		{"missing and extra specs", result(cri.HandlerRune, map[string]string{"b": "failed", "c": "skipped", "d": "passed", containerPID: "passed"}),
			[]string{`did not run "a"`, `ran "d"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Gate(runc, tc.other, 2)
			if len(got) != len(tc.want) {
				t.Fatalf("Gate = %q, want %d problems like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	known := "[k8s.io] Idempotence StopContainer should not return an error if not found"
	runc := result(cri.HandlerRunc, map[string]string{known: "failed", maskedPaths: "failed", "x": "passed"})
	if got := Baseline(runc, 1); len(got) != 0 {
		t.Errorf("Baseline on containerd 1.x = %q, want the listed failures accepted", got)
	}
	// Known on 1.6 only: containerd 2.x must not fail it.
	if got := Baseline(runc, 2); len(got) != 1 || !strings.Contains(got[0], known) {
		t.Errorf("Baseline on containerd 2.x = %q, want the 1.6-only failure reported", got)
	}
	runc.Specs["x"] = Spec{State: "timedout"}
	if got := Baseline(runc, 1); len(got) != 1 || !strings.Contains(got[0], "runc timedout") {
		t.Errorf("Baseline = %q, want an unlisted runc failure reported", got)
	}
}

func TestExceptionsHaveReasons(t *testing.T) {
	for _, x := range Exceptions {
		if x.Handler == cri.HandlerRunc || x.Spec == "" || len(x.Reason) < 40 {
			t.Errorf("exception %+v: want a non-runc handler, a spec and a reason", x)
		}
	}
	for gen, m := range RuncFailures {
		for spec, reason := range m {
			if len(reason) < 40 {
				t.Errorf("runc failure on %d.x %q: reason %q too short to explain it", gen, spec, reason)
			}
		}
	}
}

// TestLayer: files before the hard links to them (an extractor links to what it has
// extracted), each link with its file's mode (containerd applies a link's mode to the file),
// set-user-ID bits kept, parents made.
func TestLayer(t *testing.T) {
	data, err := layer(map[string]int64{"tmp": 0o1777}, map[string]entry{
		"bin/[":           {link: "bin/busybox"},
		"bin/busybox":     {mode: 0o755, data: []byte("bb")},
		"usr/local/bin/s": {mode: 0o4755, data: []byte("s")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%c %s %s %04o", h.Typeflag, h.Name, h.Linkname, h.Mode))
	}
	want := []string{
		"5 bin/  0755", "5 tmp/  1777", "5 usr/  0755", "5 usr/local/  0755", "5 usr/local/bin/  0755",
		"0 bin/busybox  0755", "0 usr/local/bin/s  4755", "1 bin/[ bin/busybox 0755",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("layer entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRuncFlaky: a flaky spec runc failed is no baseline problem and any handler outcome stands;
// one runc passed must pass under every handler; on another generation it is not flaky at all.
func TestRuncFlaky(t *testing.T) {
	runc := result(cri.HandlerRunc, map[string]string{oomKilled: "failed", maskedPaths: "failed"})
	if got := Baseline(runc, 1); len(got) != 0 {
		t.Errorf("Baseline on 1.x with runc failing the flaky OOM spec = %q, want nothing", got)
	}
	if got := Baseline(runc, 2); len(got) != 1 || !strings.Contains(got[0], oomKilled) {
		t.Errorf("Baseline on 2.x = %q, want the OOM failure reported (not flaky there)", got)
	}
	rune := result(cri.HandlerRune, map[string]string{oomKilled: "passed", maskedPaths: "failed"})
	if got := Gate(runc, rune, 1); len(got) != 0 {
		t.Errorf("Gate, runc failed the flaky spec, rune passed: %q, want nothing", got)
	}
	runc.Specs[oomKilled] = Spec{State: "passed"}
	rune.Specs[oomKilled] = Spec{State: "failed", Failure: "reason Error"}
	if got := Gate(runc, rune, 1); len(got) != 1 || !strings.Contains(got[0], "runc passed, rune failed") {
		t.Errorf("Gate, runc passed the flaky spec, rune failed: %q, want that reported", got)
	}
}
