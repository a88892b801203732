package verdictdtest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/kbs"
)

// ProcessOptions configure a verdictd binary started by Run.
type ProcessOptions struct {
	// Binary is the verdictd executable.
	Binary string
	// Listen is the address to serve on; default 127.0.0.1:0 (a free port).
	Listen string
	// SimRootPEM is the --sim-root (a sim platform's certificate: rune sim-platform-cert).
	SimRootPEM []byte
	// Policy is the --policy document.
	Policy string
	// Resources are the resources to serve, by "<repository>/<type>/<tag>".
	Resources map[string][]byte
	// Identity is the broker's TLS identity; default a fresh self-signed one (TLSIdentity).
	Identity *tls.Certificate
	// Flags are further command-line flags.
	Flags []string
}

// Process is a verdictd binary running for a test; it is stopped (SIGTERM, and it must exit
// cleanly) when the test ends.
type Process struct {
	URL      string // https://ADDR
	Pin      string
	Cert     *x509.Certificate
	Dir      string // the configuration: cert.pem, key.pem, sim.pem, policy.json
	Resource string // the --resources directory
	// KeyProvider is the ocicrypt key provider's address as ocicrypt's configuration names it
	// (IP:PORT or unix:///PATH), when o.Flags has --keyprovider-listen.
	KeyProvider string

	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

// Run starts verdictd with o and waits until it listens.
func Run(t testing.TB, o ProcessOptions) *Process {
	t.Helper()
	p := prepare(t, o)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(t) })
	ready := make(chan listening, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var line listening
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				ready <- line
			}
		}
	}()
	select {
	case line := <-ready:
		p.URL = "https://" + line.Addr
		p.KeyProvider = line.KeyProvider
	case <-p.done:
		t.Fatalf("verdictd exited:\n%s", p.Log())
	}
	return p
}

type listening struct {
	Msg         string `json:"msg"`
	Addr        string `json:"addr"`
	KeyProvider string `json:"keyprovider_addr"`
}

// Command writes o's configuration as Run does and returns verdictd's command, not started:
// for tests of what verdictd refuses at start.
func Command(t testing.TB, o ProcessOptions) *exec.Cmd {
	t.Helper()
	return prepare(t, o).cmd
}

func prepare(t testing.TB, o ProcessOptions) *Process {
	t.Helper()
	dir := t.TempDir()
	tc := o.Identity
	if tc == nil {
		id, leaf := TLSIdentity(t)
		id.Leaf = leaf
		tc = &id
	}
	leaf := tc.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(tc.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, keyPEM := PEM(t, *tc)
	p := &Process{Pin: kbs.PinOf(leaf), Cert: leaf, Dir: dir, Resource: filepath.Join(dir, "resources"), done: make(chan struct{})}
	write := func(path string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "cert.pem"), certPEM)
	write(filepath.Join(dir, "key.pem"), keyPEM)
	write(filepath.Join(dir, "sim.pem"), o.SimRootPEM)
	write(filepath.Join(dir, "policy.json"), []byte(o.Policy))
	if err := os.MkdirAll(p.Resource, 0o700); err != nil {
		t.Fatal(err)
	}
	for id, data := range o.Resources {
		write(filepath.Join(p.Resource, filepath.FromSlash(id)), data)
	}
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := append([]string{"--listen", listen, "--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem"),
		"--policy", filepath.Join(dir, "policy.json"), "--resources", p.Resource, "--sim-root", filepath.Join(dir, "sim.pem")}, o.Flags...)
	p.cmd = exec.Command(o.Binary, args...)
	return p
}

// Stop ends verdictd with SIGTERM; it must exit with status 0.
func (p *Process) Stop(t testing.TB) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("verdictd after SIGTERM: %v\n%s", err, p.Log())
	}
}

// Log is what verdictd logged so far (JSON lines).
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}
