package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/ear"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "verdictd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "verdictd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// files are a working configuration: TLS identity, policies, resources, a sim root.
type files struct {
	dir, cert, key, policy, resources, simRoot string
	certificate                                *x509.Certificate
	evidence                                   kbs.EvidenceFunc
}

func setup(t *testing.T) *files {
	t.Helper()
	dir := t.TempDir()
	platform, key, m := simtest.Enclave(t, "app", "native")
	tc, cert := verdictdtest.TLSIdentity(t)
	certPEM, keyPEM := verdictdtest.PEM(t, tc)
	f := &files{dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"),
		policy: filepath.Join(dir, "policy.json"), resources: filepath.Join(dir, "res"), simRoot: filepath.Join(dir, "sim.pem"),
		certificate: cert, evidence: func(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) { return key.Evidence(rd) }}
	write := func(p string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f.cert, certPEM)
	write(f.key, keyPEM)
	write(f.simRoot, platform.CertificatePEM())
	write(f.policy, fmt.Appendf(nil, `{"default": {"tees": {"sim": {"measurements": {"measurement": [%q]}, "allow_unknown_tcb": true}}}}`, m))
	write(filepath.Join(f.resources, "repo", "key", "db"), []byte("s3cret"))
	return f
}

func (f *files) args(extra ...string) []string {
	return append([]string{"--listen", "127.0.0.1:0", "--tls-cert", f.cert, "--tls-key", f.key, "--policy", f.policy,
		"--resources", f.resources, "--sim-root", f.simRoot}, extra...)
}

func runExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestUsageErrors(t *testing.T) {
	f := setup(t)
	badPolicy := filepath.Join(f.dir, "bad.json")
	if err := os.WriteFile(badPolicy, []byte(`{"resources": {"../x/y": {"tees": {"sim": {"allow_any_measurement": true}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(f.dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	replace := func(flag, value string) []string {
		a := f.args()
		for i := range a {
			if a[i] == flag {
				a[i+1] = value
			}
		}
		return a
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--listen is required"},
		{replace("--policy", badPolicy), "starts with '.'"},
		{replace("--policy", empty), "nothing could ever be released"},
		{replace("--resources", filepath.Join(f.dir, "absent")), "--resources"},
		{replace("--tls-key", f.cert), "--tls-cert/--tls-key"},
		{replace("--sim-root", f.cert), "--sim-root"},
		{f.args("--token-key", f.cert), "--token-key"},
		{f.args("--session-ttl", "0s"), "must be positive"},
		{f.args("extra"), "unexpected arguments"},
		{f.args("--keyprovider-listen", "0.0.0.0:50000"), "--keyprovider-listen: key provider address \"0.0.0.0:50000\": 0.0.0.0 is not a loopback address"},
		{f.args("--keyprovider-allow-unwrap"), "--keyprovider-allow-unwrap needs --keyprovider-listen"},
	} {
		code, out := runExit(t, tc.args...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, out)
		}
	}
}

func TestAddressInUse(t *testing.T) {
	f := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	args := f.args()
	args[1] = l.Addr().String()
	if code, out := runExit(t, args...); code != 1 || !strings.Contains(out, "address already in use") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if code, out := runExit(t, f.args("--keyprovider-listen", l.Addr().String())...); code != 1 || !strings.Contains(out, "--keyprovider-listen: listen tcp "+l.Addr().String()+": bind: address already in use") {
		t.Fatalf("key provider: exit %d:\n%s", code, out)
	}
}

// daemon is a running verdictd.
type daemon struct {
	cmd  *exec.Cmd
	url  string
	logs chan string
}

func start(t *testing.T, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, logs: make(chan string, 1024)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
			d.url = "https://" + line.Addr
			break
		}
	}
	if d.url == "" {
		t.Fatal("verdictd did not report listening")
	}
	go func() {
		for sc.Scan() {
			d.logs <- sc.Text()
		}
		close(d.logs)
	}()
	return d
}

// stop sends SIGTERM and returns the exit code and the rest of the log.
func (d *daemon) stop(t *testing.T) (int, string) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for l := range d.logs {
		b.WriteString(l + "\n")
	}
	err := d.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), b.String()
	}
	return 0, b.String()
}

func TestServeReleaseAndStop(t *testing.T) {
	f := setup(t)
	tokenKey, err := ear.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(tokenKey)
	keyPath := filepath.Join(f.dir, "token.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, f.args("--token-key", keyPath)...)
	c, err := kbs.NewClient(kbs.ClientConfig{URL: d.url, TEE: attestation.Sim, Evidence: f.evidence, Pin: kbs.PinOf(f.certificate)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Resource(context.Background(), "repo/key/db")
	if err != nil || string(got) != "s3cret" {
		t.Fatalf("%q %v", got, err)
	}
	if tok, err := ear.Verify(c.Token(), &tokenKey.PublicKey, time.Now()); err != nil || tok.Submods[ear.Submod].Status != ear.Affirming {
		t.Fatalf("token: %+v %v", tok, err)
	}
	_, err = c.Resource(context.Background(), "repo/key/other")
	var ke *kbs.Error
	if !errors.As(err, &ke) || ke.Status != 404 {
		t.Fatalf("missing resource: %v", err)
	}
	code, logs := d.stop(t)
	if code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, logs)
	}
	for _, want := range []string{`"msg":"released"`, `"resource":"repo/key/db"`, `"msg":"refused"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestKeyProviderServeAndStop: with --keyprovider-listen on a unix socket, the listening line names
// the key provider's address; SIGTERM stops both servers (exit 0) and removes the socket.
func TestKeyProviderServeAndStop(t *testing.T) {
	f := setup(t)
	sock := filepath.Join(t.TempDir(), "kp.sock")
	cmd := exec.Command(binary, f.args("--keyprovider-listen", "unix://"+sock)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	sc := bufio.NewScanner(stderr)
	var logs strings.Builder
	for sc.Scan() {
		logs.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `"msg":"listening"`) {
			if !strings.Contains(sc.Text(), `"keyprovider_addr":"unix://`+sock+`"`) {
				t.Errorf("listening line without the key provider: %s", sc.Text())
			}
			break
		}
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("key provider socket: %v %v\n%s", st, err, logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		logs.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line:\n%s", logs.String())
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}
