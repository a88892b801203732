package enclavehost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

// The bounds of Prepare are tested with this test binary standing in for init-runelet: a
// script runs it as TestFakePrepare with $FAKE_PREPARE saying how to misbehave.
const fakeEnv = "FAKE_PREPARE"

func TestFakePrepare(t *testing.T) {
	mode := os.Getenv(fakeEnv)
	if mode == "" {
		t.Skip("helper process for TestHostPrepareBounds")
	}
	var req agent.PrepareRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		os.Exit(3)
	}
	phases := os.NewFile(uintptr(req.PhaseFD), "phases")
	fmt.Fprintln(phases, agent.PhaseCompile)
	// The pid, for the test to check that nothing of it survives.
	os.WriteFile(os.Getenv("FAKE_PREPARE_PID"), []byte(strconv.Itoa(os.Getpid())), 0o600)
	switch mode {
	case "ok":
		json.NewEncoder(os.Stdout).Encode(&agent.PrepareResponse{Measurement: fmt.Sprintf("max=%d phasefd=%d", req.MaxModuleSize, req.PhaseFD)})
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
	timeoutInCompile := &enclave.Error{Kind: enclave.KindTimeout, Phase: agent.PhaseCompile}
	for _, tc := range []struct {
		mode, env, want string
		root            bool  // needs root's cgroups
		kind            error // the kind the error keeps (nil: none)
	}{
		{"ok", "", "max=134217728 phasefd=3", false, nil},
		{"hang", EnvPrepareTimeout + "=1s", "init-runelet prepare (compiling the wasm module) did not finish within 1s (RUNE_PREPARE_TIMEOUT)", false, timeoutInCompile},
		{"memory", EnvPrepareMemory + "=64M", "init-runelet prepare (compiling the wasm module) ran out of its 64 MiB memory limit (RUNE_PREPARE_MEMORY)", true, enclave.ErrLimit},
		{"cpu", EnvPrepareCPU + "=1", "init-runelet prepare (compiling the wasm module) used up its 1 s of CPU time (RUNE_PREPARE_CPU_SECONDS)", false, enclave.ErrLimit},
		{"crash", "", "init-runelet prepare (compiling the wasm module): exit status 2: fatal error: something broke", false, nil},
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
			resp, err := Prepare(context.Background(), runelet, &agent.PrepareRequest{})
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = resp.Measurement
			}
			if got != tc.want {
				t.Errorf("Prepare: %q\nwant %q", got, tc.want)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("Prepare: %v is not %v", err, tc.kind)
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
