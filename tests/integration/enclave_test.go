package integration

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
)

// simPlatform points rune at a platform key of the test's own and returns its certificate.
func simPlatform(t *testing.T, r *runtimeBin) *x509.Certificate {
	t.Helper()
	t.Setenv("RUNE_SIM_PLATFORM_KEY", filepath.Join(t.TempDir(), "platform-key.pem"))
	t.Setenv("RUNE_CACHE_DIR", filepath.Join(t.TempDir(), "cache"))
	res := r.run(t, "sim-platform-cert")
	if res.code != 0 {
		t.Fatalf("sim-platform-cert: %d %s", res.code, res.stderr)
	}
	blk, _ := pem.Decode([]byte(res.stdout))
	if blk == nil {
		t.Fatalf("sim-platform-cert printed no PEM: %q", res.stdout)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestEnclaveWasmRun(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	for _, code := range []string{"0", "7", "255"} {
		dir, _ := enclaveBundle(t, simWasm(), "/app/prog.wasm", "exit", code)
		res := r.run(t, "run", "-b", dir, "wasm-run")
		if res.stdout != "exit "+code+"\n" || res.code != atoi(code) {
			t.Errorf("run exit %s: code %d stdout %q stderr %q", code, res.code, res.stdout, res.stderr)
		}
		assertNothingLeft(t, r, "wasm-run", dir)
	}
	// The settings are removed from the workload's environment.
	dir, _ := enclaveBundle(t, simWasm(), "/app/prog.wasm", "env", "ENCLAVE_TYPE")
	if res := r.run(t, "run", "-b", dir, "wasm-env"); res.stdout != "unset\n" || res.code != 0 {
		t.Errorf("ENCLAVE_TYPE visible to the workload: %q %d %s", res.stdout, res.code, res.stderr)
	}
}

// TestEnclaveWasmInterpreter: ENCLAVE_RUNTIME_ARGS=engine=interpreter runs the module with the
// same output, exit status and measurement as the compiler, and compiles nothing: the host's code
// cache stays empty (a cold start pays validation only); an invalid module still fails create. A
// bad engine name fails create naming it.
func TestEnclaveWasmInterpreter(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	cache := os.Getenv("RUNE_CACHE_DIR")
	dir, _ := enclaveBundle(t, append(simWasm(), "ENCLAVE_RUNTIME_ARGS=engine=interpreter"), "/app/prog.wasm", "exit", "7")
	res := r.run(t, "run", "-b", dir, "wasm-interp")
	if res.stdout != "exit 7\n" || res.code != 7 {
		t.Fatalf("interpreted run: code %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
	assertNothingLeft(t, r, "wasm-interp", dir)
	var compiled []string
	_ = filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			compiled = append(compiled, p)
		}
		return nil
	})
	if len(compiled) != 0 {
		t.Fatalf("engine=interpreter compiled into the host cache: %v", compiled)
	}
	// The engine is not measured (docs/measurement.md): both containers attest the same value.
	measure := func(bundle, id string) string {
		if res := r.run(t, "create", "-b", bundle, id); res.code != 0 {
			t.Fatalf("create %s: %d %s", id, res.code, res.stderr)
		}
		defer r.run(t, "delete", "-f", id)
		res := r.run(t, "attest", "--nonce", "00112233445566778899aabbccddeeff", "--output", filepath.Join(t.TempDir(), "ev"), id)
		var att struct{ Measurement string }
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &att) != nil || len(att.Measurement) != 64 {
			t.Fatalf("attest %s: %d %q %s", id, res.code, res.stdout, res.stderr)
		}
		return att.Measurement
	}
	plain, _ := enclaveBundle(t, simWasm(), "/app/prog.wasm", "exit", "7")
	if mi, mc := measure(dir, "wasm-interp-m"), measure(plain, "wasm-compiled-m"); mi != mc {
		t.Fatalf("the engine changed the measurement: interpreter %s, compiler %s", mi, mc)
	}

	// The host validated nothing: PID 1 does, before it reports ready, so create still refuses an
	// invalid module, and leaves nothing.
	invalid, _ := enclaveBundle(t, append(simWasm(), "ENCLAVE_RUNTIME_ARGS=engine=interpreter"), "/app/prog.wasm", "exit", "0")
	if err := os.WriteFile(filepath.Join(invalid, "rootfs", "app", "prog.wasm"), []byte("\x00asm\x01\x00\x00\x00\x0a\x05\x01\x03\x00\x00\x0b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if res := r.run(t, "create", "-b", invalid, "wasm-interp-invalid"); res.code == 0 || !strings.Contains(res.stderr, "invalid wasm module") {
		t.Fatalf("create of an invalid module on the interpreter: code %d stderr %q", res.code, res.stderr)
	}
	assertNothingLeft(t, r, "wasm-interp-invalid", invalid)

	bad, _ := enclaveBundle(t, append(simWasm(), "ENCLAVE_RUNTIME_ARGS=engine=jit"), "/app/prog.wasm", "exit", "0")
	res = r.run(t, "run", "-b", bad, "wasm-jit")
	if res.code == 0 || !strings.Contains(res.stderr, "engine=jit") || !strings.Contains(res.stderr, "known: compiler, interpreter") {
		t.Fatalf("engine=jit: code %d stderr %q", res.code, res.stderr)
	}
	assertNothingLeft(t, r, "wasm-jit", bad)
}

// TestEnclaveWasmLifecycle: create initialises the enclave and reports "created"; exec runs in the
// enclave with exact argv; attest gives sim evidence that verifies to the container's measurement and
// binds the nonce; start runs the workload; kill reaches it; delete leaves nothing.
func TestEnclaveWasmLifecycle(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	platform := simPlatform(t, r)
	dir, _ := enclaveBundle(t, simWasm(), "/app/prog.wasm", "sleep")
	id := "wasm-life"
	if res := r.run(t, "create", "-b", dir, id); res.code != 0 {
		t.Fatalf("create: %d %s", res.code, res.stderr)
	}
	st := r.state(t, id)
	if st["status"] != "created" || st["pid"].(float64) <= 0 {
		t.Fatalf("state after create: %v", st)
	}
	if list := r.run(t, "list"); !strings.Contains(list.stdout, "created") {
		t.Errorf("list after create: %q", list.stdout)
	}
	res := r.run(t, "exec", id, "/app/prog.wasm", "args", "a b", "", `q"uo'te`, "ünï")
	if res.code != 0 || res.stdout != "|a b||q\"uo'te|ünï|\n" {
		t.Errorf("exec args: %d %q %q", res.code, res.stdout, res.stderr)
	}
	if res := r.run(t, "exec", id, "/app/prog.wasm", "exit", "9"); res.code != 9 {
		t.Errorf("exec exit status: %d, want 9 (%s)", res.code, res.stderr)
	}
	if res := r.run(t, "exec", "-e", "GREETING=hello world", id, "/app/prog.wasm", "env", "GREETING"); res.stdout != "hello world\n" {
		t.Errorf("exec env: %q %s", res.stdout, res.stderr)
	}
	// Clients copy the container's environment, settings included, into each exec: still hidden.
	for _, args := range [][]string{{"exec", id}, {"exec", "-e", "ENCLAVE_TYPE=sim", id}} {
		if res := r.run(t, append(args, "/app/prog.wasm", "env", "ENCLAVE_TYPE")...); res.stdout != "unset\n" {
			t.Errorf("%v: ENCLAVE_TYPE visible to an exec'd workload: %q %s", args, res.stdout, res.stderr)
		}
	}

	nonce := "00112233445566778899aabbccddeeff"
	evPath := filepath.Join(t.TempDir(), "evidence.bin")
	res = r.run(t, "attest", "--nonce", nonce, "--output", evPath, id)
	if res.code != 0 {
		t.Fatalf("attest: %d %s", res.code, res.stderr)
	}
	var att struct {
		TEE, Runtime, Measurement string
		ReportData                string `json:"report_data"`
		Evidence                  []byte
	}
	if err := json.Unmarshal([]byte(res.stdout), &att); err != nil {
		t.Fatalf("attest output: %v\n%s", err, res.stdout)
	}
	if att.TEE != "sim" || att.Runtime != "builtin:wasm" || len(att.Measurement) != 64 {
		t.Errorf("attest: %+v", att)
	}
	raw, err := os.ReadFile(evPath)
	if err != nil || string(raw) != string(att.Evidence) {
		t.Fatalf("--output evidence differs from the printed one: %v", err)
	}
	result, err := (&sim.Verifier{}).Verify(context.Background(), raw, attestation.Options{SimRoots: []*x509.Certificate{platform}})
	if err != nil {
		t.Fatalf("sim evidence from rune attest does not verify: %v", err)
	}
	wantRD := nonce + strings.Repeat("0", 128-len(nonce))
	if hex.EncodeToString(result.ReportData) != wantRD || result.Measurements["measurement"] != att.Measurement {
		t.Errorf("verified result %+v; want report data %s and measurement %s", result, wantRD, att.Measurement)
	}
	// Another host's platform must not be trusted for this evidence.
	other, err := sim.LoadOrCreatePlatform(filepath.Join(t.TempDir(), "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&sim.Verifier{}).Verify(context.Background(), raw, attestation.Options{SimRoots: []*x509.Certificate{other.Certificate()}}); err == nil {
		t.Error("evidence verified against another platform's certificate")
	}

	if res := r.run(t, "start", id); res.code != 0 {
		t.Fatalf("start: %d %s", res.code, res.stderr)
	}
	r.waitStatus(t, id, "running")
	if res := r.run(t, "kill", id, "TERM"); res.code != 0 {
		t.Fatalf("kill: %s", res.stderr)
	}
	r.waitStatus(t, id, "stopped")
	if res := r.run(t, "delete", id); res.code != 0 {
		t.Fatalf("delete: %s", res.stderr)
	}
	assertNothingLeft(t, r, id, dir)
}

// TestEnclaveSameMeasurement: the same image and config always measure the same; a changed argument
// measures differently.
func TestEnclaveSameMeasurement(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	measure := func(args ...string) string {
		dir, _ := enclaveBundle(t, simWasm(), args...)
		if res := r.run(t, "create", "-b", dir, "m"); res.code != 0 {
			t.Fatalf("create: %s", res.stderr)
		}
		defer r.run(t, "delete", "-f", "m")
		res := r.run(t, "attest", "m")
		var att struct{ Measurement string }
		if err := json.Unmarshal([]byte(res.stdout), &att); err != nil || att.Measurement == "" {
			t.Fatalf("attest: %v %q %s", err, res.stdout, res.stderr)
		}
		return att.Measurement
	}
	a, b, c := measure("/app/prog.wasm", "exit", "1"), measure("/app/prog.wasm", "exit", "1"), measure("/app/prog.wasm", "exit", "2")
	if a != b || a == c {
		t.Errorf("measurements: same config %s vs %s, other arg %s", a, b, c)
	}
}

func TestEnclaveNative(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	env := []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}
	dir, _ := enclaveBundle(t, env, "sh", "-c", "echo native $0; exit 4")
	if res := r.run(t, "run", "-b", dir, "native"); res.code != 4 || res.stdout != "native sh\n" {
		t.Errorf("native run: %d %q %s", res.code, res.stdout, res.stderr)
	}
	dir, _ = enclaveBundle(t, env, "/app/prog", "sleep")
	if res := r.run(t, "create", "-b", dir, "native2"); res.code != 0 {
		t.Fatalf("create: %s", res.stderr)
	}
	if res := r.run(t, "start", "native2"); res.code != 0 {
		t.Fatalf("start: %s", res.stderr)
	}
	if res := r.run(t, "exec", "native2", "/app/prog", "args", "x y", ""); res.stdout != "|x y||\n" {
		t.Errorf("native exec: %d %q %s", res.code, res.stdout, res.stderr)
	}
	r.run(t, "kill", "native2", "KILL")
	r.waitStatus(t, "native2", "stopped")
	r.run(t, "delete", "native2")
	assertNothingLeft(t, r, "native2", dir)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestEnclaveWorkloadEvidence: a workload asks for evidence over its own report data, through the wasm
// host import and through the agent socket, and gets sim evidence that verifies and binds it.
func TestEnclaveWorkloadEvidence(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	platform := simPlatform(t, r)
	for _, tc := range []struct {
		name string
		env  []string
		prog string
	}{
		{"wasm", simWasm(), "/app/prog.wasm"},
		{"native", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, "/app/prog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := enclaveBundle(t, tc.env, tc.prog, "evidence", "tls-key-hash:"+tc.name)
			res := r.run(t, "run", "-b", dir, "ev-"+tc.name)
			if res.code != 0 {
				t.Fatalf("run: %d %s", res.code, res.stderr)
			}
			raw, err := hex.DecodeString(strings.TrimSpace(res.stdout))
			if err != nil {
				t.Fatalf("evidence output %q: %v", res.stdout, err)
			}
			result, err := (&sim.Verifier{}).Verify(context.Background(), raw, attestation.Options{SimRoots: []*x509.Certificate{platform}})
			if err != nil {
				t.Fatalf("workload evidence does not verify: %v", err)
			}
			var want [64]byte
			copy(want[:], "tls-key-hash:"+tc.name)
			if string(result.ReportData) != string(want[:]) {
				t.Errorf("report data %q, want %q", result.ReportData, want)
			}
			assertNothingLeft(t, r, "ev-"+tc.name, dir)
		})
	}
}

// TestEnclaveNativeReapsOrphans: the runelet, as PID 1, reaps the workload's orphaned children, so
// no zombie stays behind while the workload runs.
func TestEnclaveNativeReapsOrphans(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	script := `(sleep 0.1 &); (true &); sleep 1
n=0; for f in /proc/[0-9]*/stat; do read l < $f; case "$l" in *") Z "*) n=$((n+1));; esac; done
echo zombies=$n`
	dir, _ := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, "sh", "-c", script)
	res := r.run(t, "run", "-b", dir, "reaper")
	if res.code != 0 || res.stdout != "zombies=0\n" {
		t.Errorf("orphans not reaped: %d %q %s", res.code, res.stdout, res.stderr)
	}
}

// TestEnclaveScratchRootfs: the runelet needs nothing from the image: a rootfs holding only the
// wasm module runs, as FROM scratch images do.
func TestEnclaveScratchRootfs(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	wasmProg, _ := enclaveProgs(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(wasmProg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "app", "prog.wasm"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := defaultSpec(t)
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/app/prog.wasm", "exit", "3"}
	spec.Process.Env = append(spec.Process.Env, simWasm()...)
	writeSpec(t, dir, spec)
	if res := r.run(t, "run", "-b", dir, "scratch"); res.code != 3 || res.stdout != "exit 3\n" {
		t.Errorf("scratch rootfs: %d %q %s", res.code, res.stdout, res.stderr)
	}
	assertNothingLeft(t, r, "scratch", dir)
}

// TestEnclaveExecKill: a signal to an exec'd process (what containerd's shim sends to the exec's pid)
// reaches the process running in the enclave runtime, which ends with it.
func TestEnclaveExecKill(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	dir, _ := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, "/app/prog", "sleep")
	if res := r.run(t, "run", "-d", "-b", dir, "execkill"); res.code != 0 {
		t.Fatalf("run -d: %s", res.stderr)
	}
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	if res := r.run(t, "exec", "-d", "--pid-file", pidFile, "execkill", "sleep", "1000"); res.code != 0 {
		t.Fatalf("exec -d: %d %s", res.code, res.stderr)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	execPid := atoi(strings.TrimSpace(string(b)))
	enclaveSleep := func() int {
		n := 0
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			cmd, _ := os.ReadFile(p)
			if string(cmd) == "sleep\x001000\x00" {
				n++
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, func() bool { return enclaveSleep() == 1 })
	if err := syscall.Kill(execPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return enclaveSleep() == 0 })
	if st := r.state(t, "execkill"); st["status"] != "running" {
		t.Errorf("killing the exec'd process disturbed the container: %v", st)
	}
}

// TestEnclaveNativeExecUser: `exec -u` in a builtin:native enclave runs the process as that user,
// not as PID 1's.
func TestEnclaveNativeExecUser(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	dir, spec := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, "/app/prog", "sleep")
	for _, set := range []*[]string{&spec.Process.Capabilities.Bounding, &spec.Process.Capabilities.Effective, &spec.Process.Capabilities.Permitted} {
		*set = append(*set, "CAP_SETUID", "CAP_SETGID")
	}
	writeSpec(t, dir, spec)
	if res := r.run(t, "run", "-d", "-b", dir, "execuser"); res.code != 0 {
		t.Fatalf("run -d: %s", res.stderr)
	}
	for user, want := range map[string]string{"1000:1001": "1000 1001\n", "0:0": "0 0\n"} {
		res := r.run(t, "exec", "-u", user, "execuser", "sh", "-c", `echo "$(id -u) $(id -g)"`)
		if res.code != 0 || res.stdout != want {
			t.Errorf("exec -u %s: %d %q %s", user, res.code, res.stdout, res.stderr)
		}
	}
}
