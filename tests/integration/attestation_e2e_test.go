package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestAttestationEndToEnd: a confidential service runs in an enclave container (sim TEE,
// builtin:native) and puts its evidence in its Enclave-TLS certificate; inclavared forwards to it;
// shelter verifies both against reference values: the right measurement passes, a wrong one fails
// with the reason.
func TestAttestationEndToEnd(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	bin := filepath.Dir(r.path)
	for _, b := range []string{"inclavared", "shelter"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s not built next to rune: %v (run make build)", b, err)
		}
	}
	work := t.TempDir()
	svcDir := filepath.Join(work, "svc")
	os.MkdirAll(svcDir, 0o755)

	dir, spec := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"},
		"/app/confidential-service", "--listen", "unix:///run/svc/svc.sock", "--message", "hello from the enclave")
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "rootfs", "app", "confidential-service"), "./examples/confidential-service")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build confidential-service: %v\n%s", err, out)
	}
	os.MkdirAll(filepath.Join(dir, "rootfs", "run", "svc"), 0o755)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/run/svc", Type: "bind", Source: svcDir, Options: []string{"rbind", "rw"}})
	writeSpec(t, dir, spec)
	if res := r.run(t, "run", "-d", "-b", dir, "confidential"); res.code != 0 {
		t.Fatalf("run -d: %d %s", res.code, res.stderr)
	}
	sock := filepath.Join(svcDir, "svc.sock")
	waitFor(t, 20*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })

	res := r.run(t, "attest", "confidential")
	var att struct{ Measurement string }
	if err := json.Unmarshal([]byte(res.stdout), &att); err != nil || len(att.Measurement) != 64 {
		t.Fatalf("attest: %v %q %s", err, res.stdout, res.stderr)
	}
	certPath := filepath.Join(work, "sim-platform.pem")
	os.WriteFile(certPath, []byte(r.run(t, "sim-platform-cert").stdout), 0o644)
	policy := func(name string, measurements ...string) string {
		p := filepath.Join(work, name)
		b, _ := json.Marshal(map[string]any{"tees": map[string]any{"sim": map[string]any{
			"measurements": map[string]any{"measurement": measurements}, "allow_unknown_tcb": true}}})
		os.WriteFile(p, b, 0o644)
		return p
	}
	out, err := exec.Command(filepath.Join(bin, "inclavared"), "--print-measurement").Output()
	if err != nil {
		t.Fatalf("inclavared --print-measurement: %v", err)
	}
	incPolicy := policy("inclavared.json", strings.TrimSpace(string(out)))
	good := policy("good.json", att.Measurement)
	wrong := policy("wrong.json", strings.Repeat("ab", 32))

	incSock := filepath.Join(work, "inclavared.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inc := exec.CommandContext(ctx, filepath.Join(bin, "inclavared"), "--listen", "unix://"+incSock,
		"--upstream", "unix://"+sock, "--upstream-policy", good, "--sim-root", certPath,
		"--sim-platform-key", os.Getenv("RUNE_SIM_PLATFORM_KEY")) // no --client-policy: shelter gets evidence only
	var incLog strings.Builder
	inc.Stdout, inc.Stderr = &incLog, &incLog
	if err := inc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		inc.Process.Signal(os.Interrupt)
		inc.Wait()
	})
	waitFor(t, 20*time.Second, func() bool { _, err := os.Stat(incSock); return err == nil })

	shelter := func(policyPath string) (string, int) {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "shelter"), "remoteattestation", "--addr", "unix://"+incSock,
			"--policy", policyPath, "--inclavared-policy", incPolicy, "--sim-root", certPath, "--output", "json")
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out1, code := shelter(good)
	if code != 0 || !strings.Contains(out1, att.Measurement) {
		t.Fatalf("shelter with the right measurement: exit %d\n%s\ninclavared: %s", code, out1, incLog.String())
	}
	var verdict map[string]any
	if err := json.Unmarshal([]byte(out1), &verdict); err != nil {
		t.Fatalf("shelter --output json: %v\n%s", err, out1)
	}
	out2, code := shelter(wrong)
	if code != 1 || !strings.Contains(out2, "measurement") {
		t.Fatalf("shelter with a wrong measurement: exit %d\n%s", code, out2)
	}
	r.run(t, "delete", "-f", "confidential")
	assertNothingLeft(t, r, "confidential", dir)
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
