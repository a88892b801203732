// Package verdictdtest runs a verdictd broker in-process on loopback TLS for tests and
// benchmarks: a self-signed certificate, a resource directory, a controllable clock and the log in
// memory. It is for tests only and must never serve real secrets.
package verdictdtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/ear"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/verdictd"
)

// Broker is a running broker.
type Broker struct {
	*verdictd.Broker
	URL      string // https://127.0.0.1:PORT
	Pin      string // sha256:<hex> of the certificate's key
	Cert     *x509.Certificate
	TLSCert  tls.Certificate
	Dir      string // the resource directory
	TokenKey *ecdsa.PrivateKey
	Clock    *Clock
	log      *syncBuffer
}

// Clock is a settable clock for sessions.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Logs is everything the broker logged (JSON lines).
func (b *Broker) Logs() string { return b.log.String() }

// Options shape a test broker.
type Options struct {
	// Policies is the policies document (JSON).
	Policies string
	// Resources maps "<repository>/<type>/<tag>" to file contents.
	Resources map[string]string
	// Verify are the verification options (sim roots and so on).
	Verify attestation.Options
	// SessionTTL and MaxSessions as in verdictd.Config (0: defaults).
	SessionTTL  time.Duration
	MaxSessions int
}

// Start starts a broker for the test; it stops when the test ends.
func Start(t testing.TB, o Options) *Broker {
	t.Helper()
	dir := t.TempDir()
	for p, content := range o.Resources {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pols, err := verdictd.ParsePolicies([]byte(o.Policies))
	if err != nil {
		t.Fatal(err)
	}
	store, err := verdictd.OpenStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tokenKey, err := ear.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	clock := &Clock{t: time.Now()}
	logs := &syncBuffer{}
	vb, err := verdictd.New(verdictd.Config{Options: o.Verify, Policies: pols, Store: store, TokenKey: tokenKey,
		SessionTTL: o.SessionTTL, MaxSessions: o.MaxSessions, Now: clock.Now, Build: "verdictd test",
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	tc, cert := TLSIdentity(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vb.ServeTLS(ctx, l, tc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker: %v", err)
		}
	})
	return &Broker{Broker: vb, URL: "https://" + l.Addr().String(), Pin: kbs.PinOf(cert), Cert: cert, TLSCert: tc,
		Dir: dir, TokenKey: tokenKey, Clock: clock, log: logs}
}

// TLSIdentity is a fresh self-signed ECDSA P-256 server certificate for 127.0.0.1.
func TLSIdentity(t testing.TB) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "verdictd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, cert
}

// PEM returns the certificate and key of tc as PEM files' contents.
func PEM(t testing.TB, tc tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(tc.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// HTTPClient trusts exactly cert, for tests that speak the protocol by hand.
func HTTPClient(cert *x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
}

// Wire speaks the protocol message by message, for tests that replay, reorder or forge messages
// the kbs client would never send.
type Wire struct {
	URL    string
	Client *http.Client
}

// Reply is one HTTP answer.
type Reply struct {
	Status int
	Body   []byte
	Cookie string // the kbs-session-id it set, if any
}

// Info decodes an error answer.
func (r Reply) Info() kbs.ErrorInfo {
	var info kbs.ErrorInfo
	_ = json.Unmarshal(r.Body, &info)
	return info
}

// Do sends one request; path is sent as is (not cleaned, not escaped again).
func (w *Wire) Do(t testing.TB, method, path, cookie string, body []byte) Reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, w.URL+"/", rd)
	if err != nil {
		t.Fatal(err)
	}
	// Path as is: the client neither cleans it nor escapes it again.
	if req.URL.Path, err = url.PathUnescape(path); err != nil {
		t.Fatal(err)
	}
	req.URL.RawPath = path
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: kbs.CookieName, Value: cookie})
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := Reply{Status: resp.StatusCode, Body: b}
	for _, c := range resp.Cookies() {
		if c.Name == kbs.CookieName {
			r.Cookie = c.Value
		}
	}
	return r
}

// Auth sends a Request and returns the session cookie and the challenge nonce.
func (w *Wire) Auth(t testing.TB, version, tee string) (cookie, nonce string) {
	t.Helper()
	body, _ := json.Marshal(kbs.Request{Version: version, TEE: tee, ExtraParams: json.RawMessage(`""`)})
	r := w.Do(t, http.MethodPost, kbs.AuthPath, "", body)
	var ch kbs.Challenge
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &ch) != nil || r.Cookie == "" {
		t.Fatalf("auth: %d %s", r.Status, r.Body)
	}
	return r.Cookie, ch.Nonce
}

// Attestation builds a 0.4.0 Attestation message for nonce and key with evidence of tee over
// the report data the protocol defines for them (or over reportData, when not nil: a forgery).
func Attestation(t testing.TB, tee attestation.TEE, nonce string, key *kbs.JWK, evidence kbs.EvidenceFunc, reportData *[attestation.ReportDataSize]byte) []byte {
	t.Helper()
	rd, err := kbs.ReportData(kbs.HashSHA384, kbs.Version, nonce, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if reportData != nil {
		rd = *reportData
	}
	ev, err := evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	primary, err := kbs.WrapEvidence(tee, ev)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(kbs.Attestation{RuntimeData: kbs.RuntimeData{Nonce: nonce, TEEPubKey: key},
		TEEEvidence: kbs.CompositeEvidence{Primary: primary}})
	if err != nil {
		t.Fatal(err)
	}
	return body
}
