package runelet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The bounds of HostPrepare are tested with this test binary standing in for init-runelet: a
// script runs it as TestFakePrepare with $FAKE_PREPARE saying how to misbehave.
const fakeEnv = "FAKE_PREPARE"

func TestFakePrepare(t *testing.T) {
	mode := os.Getenv(fakeEnv)
	if mode == "" {
		t.Skip("helper process for TestHostPrepareBounds")
	}
	var req PrepareRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		os.Exit(3)
	}
	phases := os.NewFile(uintptr(req.PhaseFD), "phases")
	fmt.Fprintln(phases, PhaseCompile)
	// The pid, for the test to check that nothing of it survives.
	os.WriteFile(os.Getenv("FAKE_PREPARE_PID"), []byte(strconv.Itoa(os.Getpid())), 0o600)
	switch mode {
	case "ok":
		json.NewEncoder(os.Stdout).Encode(&PrepareResponse{Measurement: fmt.Sprintf("max=%d phasefd=%d", req.MaxModuleSize, req.PhaseFD)})
	case "hang":
		time.Sleep(time.Hour)
	case "memory":
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "cpu":
		for n := 0; ; n++ {
			_ = n * n
		}
	case "crash":
		fmt.Fprintln(os.Stderr, "fatal error: something broke\n\ngoroutine 1 [running]:\nmain.main()")
		os.Exit(2)
	}
	os.Exit(0)
}

func fakeRunelet(t *testing.T) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "init-runelet")
	body := fmt.Sprintf("#!/bin/sh\nexec %q -test.run='^TestFakePrepare$' -test.count=1\n", os.Args[0])
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// prepareCgroups lists the transient cgroups of this process's prepares.
func prepareCgroups() []string {
	var out []string
	for _, pattern := range []string{"*/rune-prepare-" + strconv.Itoa(os.Getpid()) + "-*", "rune-prepare-" + strconv.Itoa(os.Getpid()) + "-*"} {
		m, _ := filepath.Glob(filepath.Join(cgroupRoot, pattern))
		out = append(out, m...)
	}
	return out
}

func TestHostPrepareBounds(t *testing.T) {
	runelet := fakeRunelet(t)
	for _, tc := range []struct {
		mode, env, want string
		root            bool // needs root's cgroups
	}{
		{"ok", "", "max=134217728 phasefd=3", false},
		{"hang", EnvPrepareTimeout + "=1s", "init-runelet prepare (compiling the wasm module) did not finish within 1s (RUNE_PREPARE_TIMEOUT)", false},
		{"memory", EnvPrepareMemory + "=64M", "init-runelet prepare (compiling the wasm module) ran out of its 64 MiB memory limit (RUNE_PREPARE_MEMORY)", true},
		{"cpu", EnvPrepareCPU + "=1", "init-runelet prepare (compiling the wasm module) used up its 1 s of CPU time (RUNE_PREPARE_CPU_SECONDS)", false},
		{"crash", "", "init-runelet prepare (compiling the wasm module): exit status 2: fatal error: something broke", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to make cgroups")
			}
			pidFile := filepath.Join(t.TempDir(), "pid")
			t.Setenv(fakeEnv, tc.mode)
			t.Setenv("FAKE_PREPARE_PID", pidFile)
			if k, v, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(k, v)
			}
			resp, err := HostPrepare(runelet, &PrepareRequest{})
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = resp.Measurement
			}
			if got != tc.want {
				t.Errorf("HostPrepare: %q\nwant %q", got, tc.want)
			}
			if b, err := os.ReadFile(pidFile); err == nil {
				pid, _ := strconv.Atoi(string(b))
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("prepare process %d still exists", pid)
				}
			}
			if left := prepareCgroups(); len(left) != 0 {
				t.Errorf("cgroups left behind: %v", left)
			}
		})
	}
}

func TestPrepareLimitsFromEnv(t *testing.T) {
	t.Setenv(EnvPrepareTimeout, "90s")
	t.Setenv(EnvPrepareMemory, "512M")
	t.Setenv(EnvMaxModuleSize, "64K")
	t.Setenv(EnvPrepareCPU, "7")
	t.Setenv(EnvPreparePids, "32")
	l, err := PrepareLimitsFromEnv()
	want := PrepareLimits{Timeout: 90 * time.Second, Memory: 512 << 20, CPUSeconds: 7, Pids: 32, MaxModuleSize: 64 << 10}
	if err != nil || l != want {
		t.Errorf("PrepareLimitsFromEnv = %+v, %v; want %+v", l, err, want)
	}
	for env, bad := range map[string]string{EnvPrepareTimeout: "soon", EnvPrepareMemory: "-1", EnvMaxModuleSize: "12X", EnvPrepareCPU: "0", EnvPreparePids: "2"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, bad)
			if _, err := PrepareLimitsFromEnv(); err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: %v, want an error naming it", env, bad, err)
			}
		})
	}
}

func TestFormatAndParseBytes(t *testing.T) {
	for s, n := range map[string]int64{"100": 100, "64K": 64 << 10, "128M": 128 << 20, "4G": 4 << 30} {
		if got, err := ParseBytes(s); err != nil || got != n {
			t.Errorf("ParseBytes(%q) = %d, %v", s, got, err)
		}
	}
	for n, s := range map[int64]string{100: "100 bytes", 64 << 10: "64 KiB", 128 << 20: "128 MiB", 4 << 30: "4 GiB", 1536: "1536 bytes"} {
		if got := FormatBytes(n); got != s {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, s)
		}
	}
}

func TestCheckLaunchSize(t *testing.T) {
	many := make([]string, MaxLaunchStrings)
	for i := range many {
		many[i] = "V=1"
	}
	for _, tc := range []struct {
		name string
		l    Launch
		want string // "" means accepted
	}{
		{"ordinary", Launch{Args: []string{"/app/x.wasm", "a"}, Env: []string{"PATH=/bin"}}, ""},
		{"too many variables", Launch{Args: []string{"x"}, Env: many}, "argument list too long: the entrypoint has 1 arguments and 65536 environment variables"},
		{"one huge value", Launch{Args: []string{"x"}, Env: []string{"BIG=" + strings.Repeat("x", 10<<20)}}, "argument list too long: environment variable BIG is 10485764 bytes"},
		{"one huge argument", Launch{Args: []string{"x", strings.Repeat("a", MaxArgStrlen)}}, "argument list too long: argument 1 is 131072 bytes"},
		{"too much in all", Launch{Args: []string{"x"}, Env: repeat("V=", 100<<10, 10)}, "argument list too long: the entrypoint's arguments and environment take"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLaunchSize(tc.l)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("CheckLaunchSize: %v; want %q", err, tc.want)
			}
		})
	}
}

func repeat(prefix string, size, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strings.Repeat("v", size)
	}
	return out
}

func TestInitOutput(t *testing.T) {
	out := "pal: loading\n" + InitPhasePrefix + InitPhaseLoadPAL + "\nPAL log line\n" + InitPhasePrefix + InitPhasePALInit + "\n"
	phase, last := InitOutput([]byte(out))
	if phase != "pal_init" || last != "PAL log line" {
		t.Errorf("InitOutput = %q, %q", phase, last)
	}
}
