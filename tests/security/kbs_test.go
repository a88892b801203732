package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

// Attacks on verdictd, the tenant's key broker (the KBS attestation protocol over HTTPS), run
// against bin/verdictd with the kbs client library and hand-made protocol messages. The secret is
// the tenant's; every test shows it is refused with the reason, and that verdictd logged the
// refusal and released nothing.

const kbsSecret = "tenant-secret-7f3a"

// kbsBroker is a running bin/verdictd.
type kbsBroker struct {
	*verdictdtest.Process
	url     string
	pin     string
	cert    *x509.Certificate
	dir     string // resources
	wire    *verdictdtest.Wire
	enclave *sim.EnclaveKey
	measure string
	tls     struct{ cert, key string }
}

type kbsSetup struct {
	// policies makes the --policy document from the enclave's measurement.
	policies  func(measurement string) string
	resources map[string]string
	flags     []string
	// untrustedSim: the enclave's platform is not among --sim-root (another platform is).
	untrustedSim bool
	// simRootPEM, when set, is the --sim-root instead (rune's platform, for enclave containers).
	simRootPEM []byte
	// listen, when set, is the address to serve on instead of a free loopback port.
	listen string
	// identity, when set, is the broker's TLS identity (its pin known beforehand).
	identity *tls.Certificate
}

func kbsVerdictdBinary(t *testing.T) string {
	p := os.Getenv("VERDICTD_BINARY")
	if p == "" {
		p = filepath.Join(harness.RepoRoot(t), "bin", "verdictd")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("verdictd binary %s: %v (run make build)", p, err)
	}
	return p
}

func kbsStart(t *testing.T, s kbsSetup) *kbsBroker {
	t.Helper()
	platform, key, m := simtest.Enclave(t, "tenant-app", "native")
	if s.untrustedSim {
		platform, _, _ = simtest.Enclave(t, "other", "native")
	}
	simRoot := platform.CertificatePEM()
	if s.simRootPEM != nil {
		simRoot = s.simRootPEM
	}
	if s.resources == nil {
		s.resources = map[string]string{"repo/key/db": kbsSecret}
	}
	resources := map[string][]byte{}
	for id, c := range s.resources {
		resources[id] = []byte(c)
	}
	p := verdictdtest.Run(t, verdictdtest.ProcessOptions{Binary: kbsVerdictdBinary(t), Listen: s.listen, SimRootPEM: simRoot,
		Policy: s.policies(m), Resources: resources, Identity: s.identity, Flags: s.flags})
	b := &kbsBroker{Process: p, url: p.URL, pin: p.Pin, cert: p.Cert, dir: p.Resource, enclave: key, measure: m}
	b.tls.cert, b.tls.key = filepath.Join(p.Dir, "cert.pem"), filepath.Join(p.Dir, "key.pem")
	b.wire = &verdictdtest.Wire{URL: b.url, Client: verdictdtest.HTTPClient(p.Cert)}
	return b
}

func (b *kbsBroker) log() string { return b.Log() }

func (b *kbsBroker) evidence(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
	return b.enclave.Evidence(rd)
}

func (b *kbsBroker) client(t *testing.T, url, pin string) *kbs.Client {
	t.Helper()
	c, err := kbs.NewClient(kbs.ClientConfig{URL: url, TEE: attestation.Sim, Evidence: b.evidence, Pin: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// attested opens a session and attests it with the enclave's genuine evidence.
func (b *kbsBroker) attested(t *testing.T) (cookie string, key *kbs.Key) {
	t.Helper()
	cookie, nonce := b.wire.Auth(t, kbs.Version, "sample")
	key, err := kbs.NewECKey()
	if err != nil {
		t.Fatal(err)
	}
	r := b.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, verdictdtest.Attestation(t, attestation.Sim, nonce, key.Public(), b.evidence, nil))
	if r.Status != http.StatusOK {
		t.Fatalf("genuine attestation refused: %d %s", r.Status, r.Body)
	}
	return cookie, key
}

// kbsAssertRefused checks a protocol refusal: status, trustee's error type, the reason; and that the
// secret is not in the answer.
func kbsAssertRefused(t *testing.T, r verdictdtest.Reply, status int, typ, reason string) {
	t.Helper()
	info := r.Info()
	if r.Status != status || info.Type != kbs.ErrorTypePrefix+typ || !strings.Contains(info.Detail, reason) {
		t.Fatalf("want %d %s %q, got %d %s", status, typ, reason, r.Status, r.Body)
	}
	if strings.Contains(string(r.Body), kbsSecret) {
		t.Fatal("the secret is in the refusal")
	}
}

func kbsAssertClientRefused(t *testing.T, got []byte, err error, status int, typ, reason string) {
	t.Helper()
	var e *kbs.Error
	if !errors.As(err, &e) || e.Status != status || e.Type != typ || !strings.Contains(e.Detail, reason) {
		t.Fatalf("want %d %s %q, got %q %v", status, typ, reason, got, err)
	}
	if got != nil {
		t.Fatalf("released %q", got)
	}
}

// assertNothingReleased stops the broker (so that its whole log is read) and checks the log:
// refusals logged with their reasons, no release.
func (b *kbsBroker) assertNothingReleased(t *testing.T, reasons ...string) {
	t.Helper()
	b.Stop(t)
	logs := b.log()
	if strings.Contains(logs, `"msg":"released"`) {
		t.Fatalf("verdictd released a resource:\n%s", logs)
	}
	for _, r := range reasons {
		if !strings.Contains(logs, r) {
			t.Fatalf("the log does not record %q:\n%s", r, logs)
		}
	}
}

// kbsSimPolicy allows the sim enclave of measurement.
func kbsSimPolicy(measurement string) string {
	return fmt.Sprintf(`{"tees": {"sim": {"measurements": {"measurement": [%q]}, "allow_unknown_tcb": true}}}`, measurement)
}

// kbsDefaultPolicy allows the test enclave for every resource.
func kbsDefaultPolicy(measurement string) string {
	return `{"default": ` + kbsSimPolicy(measurement) + `}`
}

// kbsFixed ignores the measurement.
func kbsFixed(doc string) func(string) string { return func(string) string { return doc } }

// Party: the pod author (or the node operator) runs another workload than the one the tenant's
// policy names and asks for the tenant's secret. Its evidence is genuine and bound, so it
// attests, but the policy's measurement rule refuses the release: 403 PolicyDeny naming
// measurements.measurement, logged with the measurement that was refused.
func TestKbsWrongMeasurement(t *testing.T) {
	_, _, expected := simtest.Enclave(t, "the-workload-the-tenant-approved", "native")
	b := kbsStart(t, kbsSetup{policies: kbsFixed(kbsDefaultPolicy(expected))})
	got, err := b.client(t, b.url, b.pin).Resource(context.Background(), "repo/key/db")
	kbsAssertClientRefused(t, got, err, http.StatusForbidden, kbs.ErrPolicyDeny, "measurements.measurement")
	b.assertNothingReleased(t, `"violations":["measurements.measurement"]`, `"measurement":"measurement:`+b.measure)
}

// Party: the node operator, who holds the sim platform key, presents sim evidence to a tenant
// whose policy admits only hardware TEEs (tdx here). Even with the sim platform trusted for sim
// evidence, the policy's "tees" rule refuses it. And sim evidence from a platform the tenant never
// trusted does not even attest: 401, "not among the trusted sim platform certificates".
func TestKbsSimRefusingPolicy(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsFixed(`{"default": {"tees": {"tdx": {"allow_any_measurement": true}}}}`)})
	got, err := b.client(t, b.url, b.pin).Resource(context.Background(), "repo/key/db")
	kbsAssertClientRefused(t, got, err, http.StatusForbidden, kbs.ErrPolicyDeny, `TEE "sim" is not allowed`)
	b.assertNothingReleased(t, `"violations":["tees"]`)

	u := kbsStart(t, kbsSetup{policies: kbsDefaultPolicy, untrustedSim: true})
	got, err = u.client(t, u.url, u.pin).Resource(context.Background(), "repo/key/db")
	kbsAssertClientRefused(t, got, err, http.StatusUnauthorized, kbs.ErrAttestation, "not among the")
	u.assertNothingReleased(t, "evidence did not verify")
}

// Party: a network attacker who recorded a genuine Attestation message replays it. On the same
// session the nonce is spent (one attestation per challenge, failed or not); on a new session the
// evidence binds the old nonce, not the new one. Both: 401 with the reason, no token.
func TestKbsReplayedAttestation(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsDefaultPolicy})
	cookie, nonce := b.wire.Auth(t, kbs.Version, "sample")
	key, _ := kbs.NewECKey()
	msg := verdictdtest.Attestation(t, attestation.Sim, nonce, key.Public(), b.evidence, nil)
	if r := b.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, msg); r.Status != http.StatusOK {
		t.Fatalf("genuine: %d %s", r.Status, r.Body)
	}
	r := b.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, msg)
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "nonce was already used")
	// Same message on a fresh session: the echoed nonce is not the new challenge.
	cookie2, nonce2 := b.wire.Auth(t, kbs.Version, "sample")
	r = b.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie2, msg)
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "not this session's challenge")
	// With the echo rewritten to the new nonce, the evidence still binds the old one.
	_ = nonce2
	cookie3, nonce3 := b.wire.Auth(t, kbs.Version, "sample")
	forged := strings.Replace(string(msg), nonce, nonce3, 1)
	r = b.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie3, []byte(forged))
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "does not bind this session's nonce and TEE key")
	if r := b.wire.Do(t, http.MethodGet, kbs.ResourcePrefix+"repo/key/db", cookie3, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("refused session still usable: %d %s", r.Status, r.Body)
	}
	b.assertNothingReleased(t, "nonce was already used", "does not bind")
}

// Party: the node operator or a network attacker between the enclave and the broker swaps the
// TEE key in a genuine attestation for its own, so that the secret is encrypted to a key it
// holds. The evidence binds the enclave's key: 401 "does not bind", no token, nothing released.
// The forgery the other way (evidence over the attacker's key from a TEE that never saw this
// nonce) fails the same way.
func TestKbsEvidenceBindsAnotherKey(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsDefaultPolicy})
	cookie, nonce := b.wire.Auth(t, kbs.Version, "sample")
	enclaveKey, _ := kbs.NewECKey()
	attackerKey, _ := kbs.NewECKey()
	genuine, _ := kbs.ReportData(kbs.HashSHA384, kbs.Version, nonce, enclaveKey.Public(), "")
	msg := verdictdtest.Attestation(t, attestation.Sim, nonce, attackerKey.Public(), b.evidence, &genuine)
	r := b.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, msg)
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "does not bind this session's nonce and TEE key")
	r = b.wire.Do(t, http.MethodGet, kbs.ResourcePrefix+"repo/key/db", cookie, nil)
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "unknown session")
	b.assertNothingReleased(t, "does not bind")
}

// Party: whoever can alter the broker's answer on its way (a TLS-terminating proxy in front of
// verdictd that holds its certificate key, a compromised load balancer). The client decrypts with
// AES-GCM over the ciphertext and the protected header: any altered byte, a swapped algorithm or
// a header it does not understand makes it refuse the resource.
func TestKbsTamperedJWE(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsDefaultPolicy})
	for _, tc := range []struct {
		name   string
		tamper func(map[string]string)
		reason string
	}{
		{"ciphertext bit", func(m map[string]string) { m["ciphertext"] = kbsFlip(m["ciphertext"]) }, "message authentication failed"},
		{"tag bit", func(m map[string]string) { m["tag"] = kbsFlip(m["tag"]) }, "message authentication failed"},
		{"wrapped key", func(m map[string]string) { m["encrypted_key"] = kbsFlip(m["encrypted_key"]) }, "unwrap content key"},
		{"algorithm swapped", func(m map[string]string) {
			m["protected"] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RSA-OAEP-256","enc":"A256GCM"}`))
		}, "key management"},
		{"header parameter added", func(m map[string]string) {
			h, _ := base64.RawURLEncoding.DecodeString(m["protected"])
			m["protected"] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(h), `{`, `{"zip":"DEF",`, 1)))
		}, "protected header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := kbsTamperingProxy(t, b, tc.tamper)
			got, err := b.client(t, proxy, b.pin).Resource(context.Background(), "repo/key/db")
			if err == nil || !strings.Contains(err.Error(), tc.reason) || got != nil {
				t.Fatalf("tampered JWE: %q %v (want %q)", got, err, tc.reason)
			}
		})
	}
}

func kbsFlip(b64 string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(b64)
	raw[0] ^= 0x80
	return base64.RawURLEncoding.EncodeToString(raw)
}

// kbsTamperingProxy serves with the broker's own TLS key (so the pin matches) and rewrites resource
// answers.
func kbsTamperingProxy(t *testing.T, b *kbsBroker, tamper func(map[string]string)) string {
	t.Helper()
	target, _ := url.Parse(b.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = verdictdtest.HTTPClient(b.cert).Transport
	rp.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasPrefix(resp.Request.URL.Path, kbs.ResourcePrefix) || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		tamper(m)
		body, _ = json.Marshal(m)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go func() { _ = srv.ServeTLS(l, b.tls.cert, b.tls.key) }()
	t.Cleanup(func() { srv.Close() })
	return "https://" + l.Addr().String()
}

// Party: anyone holding a session cookie after the session's lifetime (a leaked cookie, a stalled
// client). An expired session is dropped: resources and a late attestation are refused with 401
// "session expired".
func TestKbsExpiredSession(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsDefaultPolicy, flags: []string{"--session-ttl", "2s"}})
	cookie, _ := b.attested(t)
	pending, nonce := b.wire.Auth(t, kbs.Version, "sample")
	time.Sleep(2500 * time.Millisecond) // past the 2 s lifetime (a wait, not a threshold)
	r := b.wire.Do(t, http.MethodGet, kbs.ResourcePrefix+"repo/key/db", cookie, nil)
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "session expired")
	key, _ := kbs.NewECKey()
	r = b.wire.Do(t, http.MethodPost, kbs.AttestPath, pending, verdictdtest.Attestation(t, attestation.Sim, nonce, key.Public(), b.evidence, nil))
	kbsAssertRefused(t, r, http.StatusUnauthorized, kbs.ErrAttestation, "session expired")
	b.assertNothingReleased(t, "session expired")
}

// Party: an attested workload (or anyone with a session) asks for files outside the resource
// directory: "..", percent-encoded dots and slashes, a symlink in the directory pointing out of it
// (to a file or a directory). verdictd checks the escaped path component by component and opens
// with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: 404 InvalidRequestPath, the outside file's
// bytes never leave.
func TestKbsResourcePathTraversal(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsFixed(`{"default": {"tees": {"sim": {"allow_any_measurement": true, "allow_unknown_tcb": true}}}}`)})
	outside := t.TempDir()
	const host = "host-file-not-for-tenants"
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(host), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(b.dir, "repo", "key", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(b.dir, "repo", "linkdir")); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(b.dir, filepath.Join(outside, "secret"))
	cookie, _ := b.attested(t)
	for _, tc := range []struct{ path, reason string }{
		{"repo/key/../../" + rel, "want <repository>/<type>/<tag>"},
		{"../key/db", "starts with '.'"},
		{"repo/key/..", "starts with '.'"},
		{"%2e%2e/%2e%2e/secret", "'%'"},
		{"repo/key/%2e%2e%2f%2e%2e%2fsecret", "'%'"},
		{"repo/..%2f..%2f/secret", `component "..%2f..%2f"`},
		{"repo/key/link", "symbolic link"},
		{"repo/linkdir/secret", "symbolic link"},
	} {
		r := b.wire.Do(t, http.MethodGet, kbs.ResourcePrefix+tc.path, cookie, nil)
		kbsAssertRefused(t, r, http.StatusNotFound, kbs.ErrInvalidPath, tc.reason)
		if strings.Contains(string(r.Body), host) {
			t.Fatalf("%s: the outside file leaked", tc.path)
		}
	}
	// The genuine path still works for this session: the refusals were about the paths.
	r := b.wire.Do(t, http.MethodGet, kbs.ResourcePrefix+"repo/key/db", cookie, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("genuine resource: %d %s", r.Status, r.Body)
	}
	b.Stop(t)
	logs := b.log()
	var released []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"released"`) {
			released = append(released, line)
		}
	}
	if len(released) != 1 || !strings.Contains(released[0], `"resource":"repo/key/db"`) ||
		!strings.Contains(logs, "crosses a symbolic link") || !strings.Contains(logs, `starts with '.'`) {
		t.Fatalf("want exactly the genuine release and the refusals logged:\n%s", logs)
	}
}

// Party: an attested workload asks for a resource the tenant wrote no policy for (there is no
// "default" and the resource has no entry): never released, 403 "no policy releases".
func TestKbsResourceWithoutPolicy(t *testing.T) {
	b := kbsStart(t, kbsSetup{
		policies:  func(m string) string { return `{"resources": {"repo/key/a": ` + kbsSimPolicy(m) + `}}` },
		resources: map[string]string{"repo/key/a": "a", "repo/key/b": kbsSecret},
	})
	c := b.client(t, b.url, b.pin)
	if got, err := c.Resource(context.Background(), "repo/key/a"); err != nil || string(got) != "a" {
		t.Fatalf("the resource with a policy: %q %v", got, err)
	}
	got, err := c.Resource(context.Background(), "repo/key/b")
	kbsAssertClientRefused(t, got, err, http.StatusForbidden, kbs.ErrPolicyDeny, "no policy releases repo/key/b")
	b.Stop(t)
	if !strings.Contains(b.log(), `"rule":"none"`) {
		t.Fatalf("refusal not logged:\n%s", b.log())
	}
}

// Party: a network attacker who impersonates the broker (DNS or routing) with its own
// certificate, to collect evidence or feed the workload a secret of its choosing. The client pins
// the broker's key and refuses the TLS handshake before sending anything.
func TestKbsWrongPin(t *testing.T) {
	b := kbsStart(t, kbsSetup{policies: kbsDefaultPolicy})
	_, other := verdictdtest.TLSIdentity(t)
	got, err := b.client(t, b.url, kbs.PinOf(other)).Resource(context.Background(), "repo/key/db")
	if err == nil || !strings.Contains(err.Error(), "is not the pinned") || got != nil {
		t.Fatalf("wrong pin: %q %v", got, err)
	}
	b.Stop(t)
	if strings.Contains(b.log(), `"msg":"challenge"`) {
		t.Fatal("the client spoke the protocol to an unpinned broker")
	}
}
