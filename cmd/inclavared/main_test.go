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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
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
		"--sim-platform-key", platformKey, "--allow-unattested-clients")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "listening on") || !strings.Contains(sc.Text(), "clients NOT ATTESTED") {
		t.Fatalf("start-up line %q", sc.Text())
	}
	// The opt-out is logged as a warning that names the risk.
	if !sc.Scan() || !strings.Contains(sc.Text(), "level=WARN") || !strings.Contains(sc.Text(), inclavared.UnattestedClientsRisk) {
		t.Fatalf("no warning about unattested clients: %q", sc.Text())
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
	var resp wire.Response
	if err := wire.Call(ctx, conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeGetEnclaveInfo}, &resp); err != nil || resp.Type != wire.TypeError {
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
	base := []string{"--listen", "tcp://127.0.0.1:0", "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", pol}
	with := func(args []string, more ...string) []string { return append(slices.Clone(args), more...) }
	ok := with(base, "--allow-unattested-clients")
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr, when set
	}{
		{"no flags", []string{}, "--listen is required"},
		{"no policy", []string{"--listen", "tcp://127.0.0.1:0", "--upstream", "tcp://127.0.0.1:9"}, "--upstream-policy is required"},
		// Client attestation is the default: no --client-policy and no opt-out is refused, naming both.
		{"client policy and opt-out", with(base, "--client-policy", pol, "--allow-unattested-clients"), "exclude each other"},
		{"bad listen", []string{"--listen", "localhost", "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", pol, "--allow-unattested-clients"}, ""},
		{"bad upstream", []string{"--listen", "tcp://127.0.0.1:0", "--upstream", "udp://x:1", "--upstream-policy", pol, "--allow-unattested-clients"}, ""},
		{"missing policy", []string{"--listen", "tcp://127.0.0.1:0", "--upstream", "tcp://127.0.0.1:9", "--upstream-policy", filepath.Join(dir, "none"), "--allow-unattested-clients"}, ""},
		{"missing client policy", with(base, "--client-policy", filepath.Join(dir, "none")), "--client-policy"},
		{"zero max-conns-per-peer", with(ok, "--max-conns-per-peer", "0"), "--max-conns-per-peer must be positive"},
		{"zero max-pending", with(ok, "--max-pending", "0"), "--max-pending must be positive"},
		{"negative handshake timeout", with(ok, "--handshake-timeout", "-1s"), "--handshake-timeout must be positive"},
		{"bad idle timeout", with(ok, "--idle-timeout", "soon"), "idle-timeout"},
		{"sim without keys", ok, ""},
		{"tdx without guest", with(ok, "--attester", "tdx"), ""},
		{"unknown attester", with(ok, "--attester", "tpm"), ""},
		{"stray argument", with(ok, "extra"), ""},
		{"unknown flag", with(ok, "--bogus"), ""},
	} {
		var stderr strings.Builder
		cmd := exec.Command(bin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := exitCode(err); code != 2 {
			t.Errorf("%s: exit %d, want 2\n%s", tc.name, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: stderr %q, want %q", tc.name, stderr.String(), tc.want)
		}
	}
}
