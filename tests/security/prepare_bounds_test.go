package security

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/pal/paltest"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// What rune does on the host with what the pod supplied (the entrypoint file, a wasm module, the
// environment) is bounded, and every bound that stops it says which phase and which limit
// (docs/enclave-containers.md, "Limits on host-side work").

// pbRun runs rune like harness.Runtime.Run and also returns rune's pid, which names the
// transient cgroups of the prepares it ran.
func pbRun(t *testing.T, r *harness.Runtime, args ...string) (harness.Result, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, append([]string{"--root", r.Root}, args...)...)
	cmd.Env = append(os.Environ(), r.Env...)
	tmp := t.TempDir()
	outF, err := os.Create(filepath.Join(tmp, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(filepath.Join(tmp, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("rune %v: timed out", args)
	}
	out, _ := os.ReadFile(outF.Name())
	errb, _ := os.ReadFile(errF.Name())
	res := harness.Result{Stdout: string(out), Stderr: string(errb)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("rune %v: %v", args, err)
	}
	return res, cmd.Process.Pid
}

// pbUnquote undoes logrus's quoting of the message.
func pbUnquote(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\"`, `"`), `\\`, `\`)
}

// pbMarker tags the environment of this test's rune, which its prepares inherit, so that stray
// prepare processes of this test can be told from other tests'.
func pbMarker(t *testing.T, r *harness.Runtime) string {
	m := "RUNE_TEST_MARKER=" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	r.Env = append(r.Env, m)
	return m
}

// pbNothingLeft is harness.AssertNothingLeft plus prepare's own traces: no process carrying the
// test's marker, no transient cgroup of that rune, no half-written cache entry.
func pbNothingLeft(t *testing.T, r *harness.Runtime, id, bundle, marker string, runePid int, cacheRoot string) {
	t.Helper()
	harness.AssertNothingLeft(t, r, id, bundle)
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		env, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(env), marker) {
			cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
			t.Errorf("process %s of this test left running: %q", filepath.Dir(p), cmd)
		}
	}
	for _, pattern := range []string{"/sys/fs/cgroup/*/rune-prepare-" + strconv.Itoa(runePid) + "-*", "/sys/fs/cgroup/rune-prepare-" + strconv.Itoa(runePid) + "-*"} {
		m, _ := filepath.Glob(pattern)
		for _, c := range m {
			t.Errorf("prepare cgroup left behind: %s", c)
		}
	}
	if cacheRoot != "" {
		m, _ := filepath.Glob(filepath.Join(cacheRoot, "*", "tmp-*"))
		m2, _ := filepath.Glob(filepath.Join(cacheRoot, "*", ".*"))
		for _, d := range append(m, m2...) {
			t.Errorf("half-written cache entry left behind: %s", d)
		}
	}
}

// pbExpensiveModule is a valid WASI command module with n functions of k additions each: about
// 7n·k bytes, which wazero validates and compiles at several MB a second using some 40 bytes of
// memory per byte of module.
func pbExpensiveModule(n, k int) []byte {
	uleb := func(v int) []byte { return binary.AppendUvarint(nil, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(append([]byte{id}, uleb(len(body))...), body...) }
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, section(1, []byte{1, 0x60, 0, 0})...) // type 0: () -> ()
	funcs := uleb(n)
	for i := 0; i < n; i++ {
		funcs = append(funcs, 0)
	}
	m = append(m, section(3, funcs)...)
	m = append(m, section(7, append([]byte{1, 6}, append([]byte("_start"), 0, 0)...))...)
	body := []byte{1, 1, 0x7f} // one i32 local
	for j := 0; j < k; j++ {
		body = append(body, 0x20, 0, 0x41, 1, 0x6a, 0x21, 0) // local.get 0; i32.const 1; i32.add; local.set 0
	}
	body = append(body, 0x0b)
	code := uleb(n)
	for i := 0; i < n; i++ {
		code = append(append(code, uleb(len(body))...), body...)
	}
	return append(m, section(10, code)...)
}

// Pod author: a module file of 1 TiB (sparse: it costs the image nothing) made the host-side
// prepare read it whole into memory, as root, outside the container's cgroup. It is now refused
// from its size alone, naming the cap, before a byte of it is read.
func TestPrepareRefusesOversizedModule(t *testing.T) {
	r, root := wcRune(t)
	marker := pbMarker(t, r)
	dir, _ := wcBundle(t, []byte("placeholder"), "huge.wasm")
	f, err := os.OpenFile(filepath.Join(dir, "rootfs", "app", "huge.wasm"), os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, pid := pbRun(t, r, "create", "-b", dir, "pb-huge")
	want := "wasm module /app/huge.wasm is 1099511627776 bytes, more than the 128 MiB limit for a module (RUNE_WASM_MAX_MODULE_SIZE)"
	if res.Code != 1 || !strings.Contains(pbUnquote(res.Stderr), want) {
		t.Errorf("create: %+v\nwant %q", res, want)
	}
	pbNothingLeft(t, r, "pb-huge", dir, marker, pid, root)

	// The cap is configurable; a real module over it is refused the same way.
	r.Env = append(r.Env, "RUNE_WASM_MAX_MODULE_SIZE=64K")
	dir2, _ := wcBundle(t, wcProbe(t), "probe.wasm")
	res, pid = pbRun(t, r, "create", "-b", dir2, "pb-cap")
	if res.Code != 1 || !strings.Contains(pbUnquote(res.Stderr), "more than the 64 KiB limit for a module (RUNE_WASM_MAX_MODULE_SIZE)") {
		t.Errorf("create over a 64K cap: %+v", res)
	}
	pbNothingLeft(t, r, "pb-cap", dir2, marker, pid, root)
}

// Pod author: a module that is cheap to ship but expensive to validate and compile (many
// functions) kept the host-side prepare busy and growing, unbounded, as root outside any cgroup.
// Each bound stops it now with an error naming the phase and the limit; nothing is left.
func TestPrepareExpensiveModuleBounded(t *testing.T) {
	module := pbExpensiveModule(60000, 60) // 25 MB: ~1 GB of memory, seconds of CPU to compile
	for _, tc := range []struct {
		name, env, want string
	}{
		{"memory", "RUNE_PREPARE_MEMORY=64M", "ran out of its 64 MiB memory limit (RUNE_PREPARE_MEMORY)"},
		{"cpu", "RUNE_PREPARE_CPU_SECONDS=1", "used up its 1 s of CPU time (RUNE_PREPARE_CPU_SECONDS)"},
		{"deadline", "RUNE_PREPARE_TIMEOUT=1s", "did not finish within 1s (RUNE_PREPARE_TIMEOUT)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, root := wcRune(t)
			marker := pbMarker(t, r)
			r.Env = append(r.Env, tc.env)
			dir, _ := wcBundle(t, module, "big.wasm")
			res, pid := pbRun(t, r, "create", "-b", dir, "pb-big")
			msg := pbUnquote(res.Stderr)
			phaseNamed := strings.Contains(msg, "init-runelet prepare (validating the wasm module)") ||
				strings.Contains(msg, "init-runelet prepare (compiling the wasm module)")
			if res.Code != 1 || !phaseNamed || !strings.Contains(msg, tc.want) {
				t.Errorf("create: %+v\nwant the wasm phase and %q", res, tc.want)
			}
			pbNothingLeft(t, r, "pb-big", dir, marker, pid, root)
		})
	}
}

// pbPAL installs the reference PAL (API v3) in a PAL directory that r's configuration allows
// (rune loads PALs only from there: tests/security/pal_paths_test.go).
func pbPAL(t *testing.T, r *harness.Runtime) string {
	t.Helper()
	return harness.InstallPAL(t, harness.PALDir(t, r), "libpal.so", paltest.Options{Version: 3})
}

// Pod author (through a PAL setting) or a broken PAL: a pal_init that never returns used to fail
// create after two minutes with only "i/o timeout". It fails after the configured deadline, naming
// pal_init, and the stuck runelet is gone.
func TestHungPALInitFailsCreate(t *testing.T) {
	r, _ := wcRune(t)
	marker := pbMarker(t, r)
	r.Env = append(r.Env, "RUNE_ENCLAVE_INIT_TIMEOUT=2s")
	dir, spec := harness.Bundle(t, "/bin/true")
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+pbPAL(t, r), "ENCLAVE_RUNTIME_ARGS=hang=pal_init")
	harness.WriteSpec(t, dir, spec)
	res, pid := pbRun(t, r, "create", "-b", dir, "pb-hang")
	want := "pal_init did not finish within 2s (RUNE_ENCLAVE_INIT_TIMEOUT)"
	if res.Code != 1 || !strings.Contains(pbUnquote(res.Stderr), want) {
		t.Errorf("create: %+v\nwant %q", res, want)
	}
	pbNothingLeft(t, r, "pb-hang", dir, marker, pid, "")
}

// Pod author: an environment too large to reach the runelet (200000 variables, or one value of
// 10 MB) used to fail create with "connection reset by peer". It fails before any host-side work
// with an "argument list too long" error naming the limit.
func TestHugeEnvironmentRefused(t *testing.T) {
	many := make([]string, 200000)
	for i := range many {
		many[i] = "V" + strconv.Itoa(i) + "=1"
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"many variables", many, "argument list too long: the entrypoint has 1 arguments and 200002 environment variables; an enclave container takes at most 65536 in all"},
		{"one huge value", []string{"BIG=" + strings.Repeat("x", 10<<20)}, "argument list too long: environment variable BIG is 10485764 bytes; one variable may have at most 131071"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, root := wcRune(t)
			marker := pbMarker(t, r)
			dir, spec := wcBundle(t, wcProbe(t), "probe.wasm")
			spec.Process.Env = append(spec.Process.Env, tc.env...)
			harness.WriteSpec(t, dir, spec)
			res, pid := pbRun(t, r, "create", "-b", dir, "pb-env")
			if res.Code != 1 || !strings.Contains(pbUnquote(res.Stderr), tc.want) {
				t.Errorf("create: code %d stderr %.300s\nwant %q", res.Code, res.Stderr, tc.want)
			}
			pbNothingLeft(t, r, "pb-env", dir, marker, pid, root)
			if es, _ := os.ReadDir(root); len(es) != 0 {
				t.Errorf("the host compiled the module of a refused container: %v", es)
			}
		})
	}
}

// A PAL that crashes in pal_exec (the workload running) used to dump the runelet's Go crash
// report, goroutine traces and all, into the workload's stderr. The workload's stderr now gets
// one line naming the call and the signal, and the container ends by that signal (139).
func TestPALExecCrashReportedInOneLine(t *testing.T) {
	r, _ := wcRune(t)
	marker := pbMarker(t, r)
	dir, spec := harness.Bundle(t, "/bin/echo", "never printed")
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+pbPAL(t, r), "ENCLAVE_RUNTIME_ARGS=crash=pal_exec")
	// runc's default ambient capabilities draw warnings on this host (no CAP_SYS_RESOURCE…): the
	// stderr under test is the runelet's alone.
	spec.Process.Capabilities.Ambient = nil
	harness.WriteSpec(t, dir, spec)
	res, pid := pbRun(t, r, "run", "-b", dir, "pb-crash")
	want := "init-runelet: enclave runtime crashed in pal_exec: SIGSEGV: segmentation violation\n"
	if res.Code != 139 || res.Stderr != want || res.Stdout != "" {
		t.Errorf("run: code %d stdout %q stderr:\n%s\nwant 139 and exactly %q", res.Code, res.Stdout, res.Stderr, want)
	}
	r.Run(t, "delete", "-f", "pb-crash")
	pbNothingLeft(t, r, "pb-crash", dir, marker, pid, "")
}
