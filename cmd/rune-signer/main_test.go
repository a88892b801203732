package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/signservice"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type pkiFiles struct {
	dir                       string
	signingKey                string
	caFile                    string
	serverCert, serverKey     string
	clientCert, clientKey     string
	strangerCert, strangerKey string
}

func newPKI(t *testing.T) pkiFiles {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "service")
	p := pkiFiles{dir: dir, caFile: ca.WriteCA(t, dir)}
	p.serverCert, p.serverKey = ca.Server(t, "rune-signer").Write(t, dir)
	p.clientCert, p.clientKey = ca.Client(t, "node-1").Write(t, dir)
	p.strangerCert, p.strangerKey = testpki.NewCA(t, "other").Client(t, "stranger").Write(t, dir)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.signingKey = filepath.Join(dir, "signing-key.pem")
	if err := os.WriteFile(p.signingKey, testpki.KeyPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSigner runs the program in-process on a loopback port until the test ends.
func startSigner(t *testing.T, p pkiFiles) (url string, logs *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &lockedBuffer{}
	addr := make(chan net.Addr, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--key", p.signingKey, "--tls-cert", p.serverCert,
			"--tls-key", p.serverKey, "--client-ca", p.caFile}, io.Discard, logs, func(a net.Addr) { addr <- a })
	}()
	var a net.Addr
	select {
	case a = <-addr:
	case code := <-done:
		t.Fatalf("rune-signer exited with %d:\n%s", code, logs)
	}
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("rune-signer exited with %d:\n%s", code, logs)
		}
	})
	return "https://" + a.String() + "/v1/sign", logs
}

func sampleManifest() enclavemanifest.Manifest {
	return enclavemanifest.Manifest{
		Measurement: strings.Repeat("ab", 32),
		Enclave:     enclavemanifest.EnclaveFrom(&enclave.Settings{Type: "sim", RuntimePath: "builtin:native", LogLevel: "info"}),
		Entrypoint:  enclavemanifest.Entrypoint{Path: "/bin/app", Args: []string{"/bin/app"}, Env: []string{"A=1"}, Cwd: "/"},
		Image:       &enclavemanifest.Image{Reference: "registry.example/app:1", Digest: "sha256:" + strings.Repeat("0", 64)},
	}
}

func TestEndToEnd(t *testing.T) {
	p := newPKI(t)
	url, logs := startSigner(t, p)

	// rune's trust file comes from --print-public-key.
	var pub bytes.Buffer
	if code := run(context.Background(), []string{"--key", p.signingKey, "--print-public-key"}, &pub, io.Discard, nil); code != 0 {
		t.Fatalf("--print-public-key exited with %d", code)
	}
	trustFile := filepath.Join(p.dir, "trust.pem")
	os.WriteFile(trustFile, pub.Bytes(), 0o600)
	trust, err := enclavemanifest.LoadTrust(trustFile)
	if err != nil {
		t.Fatalf("trust from --print-public-key: %v\n%s", err, pub.String())
	}

	signer, err := signservice.NewClient(signservice.ClientOptions{URL: url, ClientCertFile: p.clientCert, ClientKeyFile: p.clientKey, CACertFile: p.caFile, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	data, err := enclavemanifest.Sign(context.Background(), sampleManifest(), signer)
	if err != nil {
		t.Fatalf("sign through rune-signer: %v\n%s", err, logs)
	}
	m, err := enclavemanifest.Verify(data, trust)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !strings.Contains(pub.String(), m.Signer.KeyID) {
		t.Fatalf("--print-public-key does not show key id %s:\n%s", m.Signer.KeyID, pub.String())
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"signed enclave manifest"`) || !strings.Contains(l, "CN=node-1") {
		t.Fatalf("no audit log line:\n%s", l)
	}

	// A client with a certificate from another CA gets nothing.
	stranger, err := signservice.NewClient(signservice.ClientOptions{URL: url, ClientCertFile: p.strangerCert, ClientKeyFile: p.strangerKey, CACertFile: p.caFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enclavemanifest.Sign(context.Background(), sampleManifest(), stranger); err == nil {
		t.Fatal("a client of another CA got a signature")
	}

	// Nor does a client without a certificate, nor one asking another path.
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(p.caFile)
	roots.AppendCertsFromPEM(caPEM)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if resp, err := anon.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("unauthenticated client answered %s", resp.Status)
	}
	cert, _ := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	authed := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	resp, err := authed.Get(strings.TrimSuffix(url, "/v1/sign") + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("other path: %s", resp.Status)
	}
	// An oversized request is cut off.
	resp, err = authed.Post(url, "application/json", bytes.NewReader(make([]byte, signservice.MaxRequestSize+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized request: %s", resp.Status)
	}
}

func TestUsageErrors(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no key", []string{"--tls-cert", p.serverCert}, 2, "--key is required"},
		{"no TLS", []string{"--key", p.signingKey}, 2, "--tls-cert, --tls-key, --client-ca required"},
		{"no client CA", []string{"--key", p.signingKey, "--tls-cert", p.serverCert, "--tls-key", p.serverKey}, 2, "--client-ca required"},
		{"bad log level", []string{"--key", p.signingKey, "--log-level", "loud"}, 2, "--log-level"},
		{"stray argument", []string{"--key", p.signingKey, "serve"}, 2, "unexpected arguments"},
		{"unknown flag", []string{"--insecure"}, 2, "flag provided but not defined"},
		{"key is a certificate", []string{"--key", p.serverCert, "--print-public-key"}, 1, "not a private key"},
		{"client CA is a key", []string{"--listen", "127.0.0.1:0", "--key", p.signingKey, "--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--client-ca", p.clientKey}, 1, "not a CERTIFICATE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tc.args, io.Discard, &stderr, nil)
			if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.msg)
			}
		})
	}
}
