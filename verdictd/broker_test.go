package verdictd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/ear"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

const secret = "the tenant's database password"

// simPolicy allows sim evidence of exactly measurement.
func simPolicy(measurement string) string {
	return fmt.Sprintf(`{"tees": {"sim": {"measurements": {"measurement": [%q]}, "allow_unknown_tcb": true}}}`, measurement)
}

type fixture struct {
	broker      *verdictdtest.Broker
	key         *sim.EnclaveKey
	measurement string
	wire        *verdictdtest.Wire
}

// newFixture starts a broker whose default policy allows the sim enclave "app", trusting its
// platform, with the secret at repo/key/db.
func newFixture(t *testing.T, policies func(measurement string) string, o verdictdtest.Options) *fixture {
	t.Helper()
	platform, key, m := simtest.Enclave(t, "app", "native")
	if policies == nil {
		policies = func(m string) string { return `{"default": ` + simPolicy(m) + `}` }
	}
	o.Policies = policies(m)
	if o.Resources == nil {
		o.Resources = map[string]string{"repo/key/db": secret}
	}
	o.Verify.SimRoots = append(o.Verify.SimRoots, platform.Certificate())
	b := verdictdtest.Start(t, o)
	return &fixture{broker: b, key: key, measurement: m,
		wire: &verdictdtest.Wire{URL: b.URL, Client: verdictdtest.HTTPClient(b.Cert)}}
}

func (f *fixture) evidence(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
	return f.key.Evidence(rd)
}

func (f *fixture) client(t *testing.T, mod func(*kbs.ClientConfig)) *kbs.Client {
	t.Helper()
	cfg := kbs.ClientConfig{URL: f.broker.URL, TEE: attestation.Sim, Evidence: f.evidence, Pin: f.broker.Pin}
	if mod != nil {
		mod(&cfg)
	}
	c, err := kbs.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func wantRefusal(t *testing.T, err error, status int, typ string, detail ...string) {
	t.Helper()
	var e *kbs.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a %d %s refusal, got %v", status, typ, err)
	}
	if e.Status != status || e.Type != typ {
		t.Fatalf("want %d %s, got %v", status, typ, e)
	}
	for _, d := range detail {
		if !strings.Contains(e.Detail, d) {
			t.Fatalf("refusal %q does not say %q", e.Detail, d)
		}
	}
}

func TestReleaseToAttestedEnclave(t *testing.T) {
	for _, rsaBits := range []int{0, 2048} {
		t.Run(fmt.Sprintf("rsa=%d", rsaBits), func(t *testing.T) {
			f := newFixture(t, nil, verdictdtest.Options{})
			c := f.client(t, func(cfg *kbs.ClientConfig) { cfg.RSAKeyBits = rsaBits })
			got, err := c.Resource(context.Background(), "repo/key/db")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != secret {
				t.Fatalf("got %q", got)
			}
			// The token is an EAR signed by the broker's key, affirming under the default policy,
			// naming the TEE key where trustee's token verifier looks for it.
			tok, err := ear.Verify(c.Token(), &f.broker.TokenKey.PublicKey, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			a := tok.Submods[ear.Submod]
			if a == nil || a.Status != ear.Affirming {
				t.Fatalf("appraisal %+v", a)
			}
			raw, _ := json.Marshal(a.AnnotatedEvidence)
			var ae struct {
				Sim struct {
					Measurements map[string]string `json:"measurements"`
				} `json:"sim"`
				RuntimeData struct {
					Key *kbs.JWK `json:"tee-pubkey"`
				} `json:"runtime_data_claims"`
			}
			if err := json.Unmarshal(raw, &ae); err != nil {
				t.Fatal(err)
			}
			if ae.Sim.Measurements["measurement"] != f.measurement || ae.RuntimeData.Key == nil {
				t.Fatalf("annotated evidence %s", raw)
			}
			logs := f.broker.Logs()
			for _, want := range []string{`"msg":"attested"`, `"msg":"released"`, `"rule":"default"`, `"measurement":"measurement:` + f.measurement} {
				if !strings.Contains(logs, want) {
					t.Fatalf("log lacks %s:\n%s", want, logs)
				}
			}
		})
	}
}

func TestResourcePolicyReplacesDefault(t *testing.T) {
	_, _, other := simtest.Enclave(t, "other", "native")
	f := newFixture(t, func(m string) string {
		return `{"default": ` + simPolicy(m) + `, "resources": {"repo/key/other": ` + simPolicy(other) + `}}`
	}, verdictdtest.Options{Resources: map[string]string{"repo/key/db": secret, "repo/key/other": "x"}})
	c := f.client(t, nil)
	if _, err := c.Resource(context.Background(), "repo/key/db"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Resource(context.Background(), "repo/key/other")
	wantRefusal(t, err, http.StatusForbidden, kbs.ErrPolicyDeny, "resources.repo/key/other", "measurements.measurement")
}

func TestContraindicatedTokenWhenDefaultFails(t *testing.T) {
	_, _, other := simtest.Enclave(t, "other", "native")
	f := newFixture(t, func(string) string { return `{"default": ` + simPolicy(other) + `}` }, verdictdtest.Options{})
	c := f.client(t, nil)
	token, err := c.Attest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ear.Verify(token, &f.broker.TokenKey.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := tok.Submods[ear.Submod]
	if a.Status != ear.Contraindicated || len(a.Violations) == 0 || !strings.Contains(a.Violations[0], "measurements.measurement") {
		t.Fatalf("appraisal %+v", a)
	}
	_, err = c.Resource(context.Background(), "repo/key/db")
	wantRefusal(t, err, http.StatusForbidden, kbs.ErrPolicyDeny, "measurements.measurement")
}

func TestMissingResourceAfterPolicy(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	c := f.client(t, nil)
	_, err := c.Resource(context.Background(), "repo/key/absent")
	wantRefusal(t, err, http.StatusNotFound, kbs.ErrResourceMissing, "no such resource")
}

func TestExpiredSessionReattests(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{SessionTTL: time.Minute})
	c := f.client(t, nil)
	if _, err := c.Attest(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := c.Token()
	f.broker.Clock.Advance(2 * time.Minute)
	// The client learns of the expiry from a 401 and runs a fresh handshake.
	if got, err := c.Resource(context.Background(), "repo/key/db"); err != nil || string(got) != secret {
		t.Fatalf("%q %v", got, err)
	}
	if c.Token() == first {
		t.Fatal("no new handshake")
	}
	if !strings.Contains(f.broker.Logs(), "session expired") {
		t.Fatal("expiry not logged")
	}
}

func TestSessionsBounded(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{MaxSessions: 2, SessionTTL: time.Minute})
	// A flood of pending sessions evicts the oldest pending one, not an attested one.
	c := f.client(t, nil)
	if _, err := c.Attest(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, _ := f.wire.Auth(t, kbs.Version, "sample")
	f.wire.Auth(t, kbs.Version, "sample")
	r := f.wire.Do(t, http.MethodPost, kbs.AttestPath, first, []byte(`{}`))
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Info().Detail, "unknown session") {
		t.Fatalf("oldest pending session not evicted: %d %s", r.Status, r.Body)
	}
	if got, err := c.Resource(context.Background(), "repo/key/db"); err != nil || string(got) != secret {
		t.Fatalf("attested session lost: %q %v", got, err)
	}
	// With every session attested and live, /auth is refused until one expires.
	c2 := f.client(t, nil)
	f.broker.Clock.Advance(2 * time.Minute)
	if _, err := c.Attest(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Attest(context.Background()); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(kbs.Request{Version: kbs.Version, TEE: "sample"})
	r = f.wire.Do(t, http.MethodPost, kbs.AuthPath, "", body)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Info().Detail, "too many open sessions") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	f.broker.Clock.Advance(2 * time.Minute)
	f.wire.Auth(t, kbs.Version, "sample")
}

func TestRequestRefusals(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	for _, tc := range []struct {
		body   string
		detail string
	}{
		{`{"version": "0.1.1", "tee": "sample", "extra-params": ""}`, "KBS Client Protocol Version Mismatch"},
		{`{"version": "0.1.0", "tee": "sample", "extra-params": ""}`, "RSA1_5"},
		{`{"version": "0.4.0", "tee": "az-snp-vtpm", "extra-params": ""}`, `TEE "az-snp-vtpm" is not supported`},
		{`{"version": "0.4.0", "tee": "sample", "extra-params": {"supported-hash-algorithms": ["sha256"]}}`, "sha384"},
		{`[1]`, "request is not"},
	} {
		r := f.wire.Do(t, http.MethodPost, kbs.AuthPath, "", []byte(tc.body))
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Info().Detail, tc.detail) || r.Cookie != "" {
			t.Errorf("%s: %d %s", tc.body, r.Status, r.Body)
		}
	}
	r := f.wire.Do(t, http.MethodGet, kbs.AuthPath, "", nil)
	if r.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET auth: %d", r.Status)
	}
	r = f.wire.Do(t, http.MethodGet, "/kbs/v0/other/x", "", nil)
	if r.Status != http.StatusNotFound || r.Info().Type != kbs.ErrorTypePrefix+kbs.ErrInvalidPath {
		t.Errorf("unknown path: %d %s", r.Status, r.Body)
	}
}

// Older protocol versions: 0.3.0 (key at the top, composite evidence) and 0.2.0 (plain evidence,
// runtime data without "additional-evidence"), as guest-components of those releases send them.
func TestOlderProtocolVersions(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	for _, version := range []string{kbs.Version03, kbs.Version02} {
		t.Run(version, func(t *testing.T) {
			cookie, nonce := f.wire.Auth(t, version, "sample")
			key, err := kbs.NewECKey()
			if err != nil {
				t.Fatal(err)
			}
			rd, err := kbs.ReportData(kbs.HashSHA384, version, nonce, key.Public(), "")
			if err != nil {
				t.Fatal(err)
			}
			ev, _ := f.key.Evidence(rd)
			primary, _ := kbs.WrapEvidence(attestation.Sim, ev)
			pub, _ := json.Marshal(key.Public())
			var body string
			if version == kbs.Version03 {
				body = fmt.Sprintf(`{"tee-pubkey": %s, "tee-evidence": {"primary_evidence": %s, "additional_evidence": ""}}`, pub, primary)
			} else {
				body = fmt.Sprintf(`{"tee-pubkey": %s, "tee-evidence": %s}`, pub, primary)
			}
			if r := f.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, []byte(body)); r.Status != http.StatusOK {
				t.Fatalf("attest: %d %s", r.Status, r.Body)
			}
			r := f.wire.Do(t, http.MethodGet, kbs.ResourcePrefix+"repo/key/db", cookie, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("resource: %d %s", r.Status, r.Body)
			}
			if pt, err := key.Open(r.Body); err != nil || string(pt) != secret {
				t.Fatalf("%q %v", pt, err)
			}
		})
	}
}

func TestSessionTEEMustMatchEvidence(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	cookie, nonce := f.wire.Auth(t, kbs.Version, "tdx")
	key, _ := kbs.NewECKey()
	body := verdictdtest.Attestation(t, attestation.Sim, nonce, key.Public(), f.evidence, nil)
	r := f.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, body)
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Info().Detail, "opened for tdx") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

func TestEvidenceShapes(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	for _, tc := range []struct{ primary, detail string }{
		{`{"svn": "1", "report_data": "AAAA"}`, "sample evidence is unsigned"},
		{`{"attestation_report": {}, "cert_chain": []}`, "SNP evidence"},
		{`{"quote": "AAAA"}`, "for tdx and sgx"},
		{`{"evidence": "not base64!"}`, "not standard base64"},
		{`"AAAA"`, "must be a JSON object"},
	} {
		cookie, nonce := f.wire.Auth(t, kbs.Version, "sample")
		key, _ := kbs.NewECKey()
		pub, _ := json.Marshal(key.Public())
		body := fmt.Sprintf(`{"runtime-data": {"nonce": %q, "tee-pubkey": %s}, "tee-evidence": {"primary_evidence": %s, "additional_evidence": ""}}`, nonce, pub, tc.primary)
		r := f.wire.Do(t, http.MethodPost, kbs.AttestPath, cookie, []byte(body))
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Info().Detail, tc.detail) {
			t.Errorf("%s: %d %s", tc.primary, r.Status, r.Body)
		}
	}
}

func TestStoreRefusesSymlinksAndSpecialFiles(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	dir := f.broker.Dir
	inside := filepath.Join(dir, "repo", "key", "db")
	if err := os.Symlink(inside, filepath.Join(dir, "repo", "key", "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "repo", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	c := f.client(t, nil)
	// Even a symlink that stays inside the directory is refused: RESOLVE_NO_SYMLINKS.
	_, err := c.Resource(context.Background(), "repo/key/alias")
	wantRefusal(t, err, http.StatusNotFound, kbs.ErrInvalidPath, "symbolic link")
	_, err = c.Resource(context.Background(), "repo/../db")
	if err == nil || !strings.Contains(err.Error(), "starts with '.'") {
		t.Fatalf("client sent a dot path: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "repo", "dir", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "repo", "dir", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = c.Resource(context.Background(), "repo/dir/sub")
	wantRefusal(t, err, http.StatusNotFound, kbs.ErrInvalidPath, "not a regular file")
}

// Many enclaves at once: each gets its own session, key and release (run with -race).
func TestConcurrentClients(t *testing.T) {
	f := newFixture(t, nil, verdictdtest.Options{})
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() {
			c, err := kbs.NewClient(kbs.ClientConfig{URL: f.broker.URL, TEE: attestation.Sim, Evidence: f.evidence, Pin: f.broker.Pin})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := 0; j < 3; j++ {
				got, err := c.Resource(context.Background(), "repo/key/db")
				if err == nil && string(got) != secret {
					err = fmt.Errorf("got %q", got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(f.broker.Logs(), `"msg":"released"`); n != 24 {
		t.Fatalf("%d releases logged, want 24", n)
	}
}
