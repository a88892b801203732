package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared"
)

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "inclavared")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestSIGTERM starts the daemon on a unix socket, attests it, and stops it with SIGTERM: exit 0,
// socket removed.
func TestSIGTERM(t *testing.T) {
	bin := build(t)
	dir, err := os.MkdirTemp("", "incl") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "inclavared.sock")
	platformKey := filepath.Join(dir, "sim", "platform-key.pem")
	pol := filepath.Join(dir, "policy.json")
	os.WriteFile(pol, []byte(`{"tees":{"sim":{"allow_any_measurement":true,"allow_unknown_tcb":true}}}`), 0o644)

	cmd := exec.Command(bin, "--listen", "unix://"+sock, "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", pol,
		"--sim-platform-key", platformKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "listening on") {
		t.Fatalf("start-up line %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
			t.Log(sc.Text())
		}
	}()

	// The daemon's evidence verifies, and names the binary's own hash.
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	cert, err := sim.LoadPlatformCertificate(platformKey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(`{"tees":{"sim":{"measurements":{"measurement":["` + hex.EncodeToString(sum[:]) + `"]},"allow_unknown_tcb":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	v := &enclavetls.Verifier{Policy: p, RequireFresh: true}
	v.Options.SimRoots = append(v.Options.SimRoots, cert)
	cl, err := enclavetls.NewClient(enclavetls.Config{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
	defer cancel()
	conn, err := cl.DialContext(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// No upstream listens at 127.0.0.1:9: the answer is an error, and the daemon stays up.
	var resp inclavared.Response
	if err := inclavared.Call(ctx, conn, inclavared.NewCodec(conn), &inclavared.Request{Type: inclavared.TypeGetEnclaveInfo}, &resp); err != nil || resp.Type != inclavared.TypeError {
		t.Fatalf("%+v %v", resp, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	conn.Close()

	out, err := exec.Command(bin, "--print-measurement").Output()
	if err != nil || strings.TrimSpace(string(out)) != hex.EncodeToString(sum[:]) {
		t.Fatalf("--print-measurement %q %v", out, err)
	}
}

func TestUsageErrors(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.json")
	os.WriteFile(pol, []byte(`{"tees":{"sim":{"allow_any_measurement":true}}}`), 0o644)
	ok := []string{"--listen", "tcp://127.0.0.1:0", "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", pol}
	for name, args := range map[string][]string{
		"no flags":          {},
		"no policy":         {"--listen", "tcp://127.0.0.1:0", "--upstream", "tcp://127.0.0.1:9"},
		"bad listen":        {"--listen", "localhost", "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", pol},
		"bad upstream":      {"--listen", "tcp://127.0.0.1:0", "--upstream", "udp://x:1", "--upstream-policy", pol},
		"missing policy":    {"--listen", "tcp://127.0.0.1:0", "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", filepath.Join(dir, "none")},
		"sim without keys":  ok,
		"tdx without guest": append(ok, "--attester", "tdx"),
		"unknown attester":  append(ok, "--attester", "tpm"),
		"stray argument":    append(ok, "extra"),
		"unknown flag":      append(ok, "--bogus"),
	} {
		err := exec.Command(bin, args...).Run()
		if code := exitCode(err); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
}
