package collateral

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/collateral/pcstest"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/validate"
	_ "github.com/inclavare-containers/inclavare-go/attestation/sgx"
	_ "github.com/inclavare-containers/inclavare-go/attestation/tdx"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func sample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

var goTDXTime = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)

// TestIntelFetchVerifyCache: the SPR E4 TDX quote verified with collateral fetched from the
// stand-in PCCS reaches exactly the verdict the separate files give (its README: no TCB level
// matches), then again from the cache without a request, and offline.
func TestIntelFetchVerifyCache(t *testing.T) {
	p := pcstest.New(t, pcstest.Recorded(t))
	quote := sample(t, "tdx/gotdx_quote_v4_spr_e4_trailing39.dat")
	cache := &Cache{Dir: t.TempDir()}
	src := &Intel{BaseURL: p.URL, Fetcher: Fetcher{Client: p.Client(), Cache: cache}}
	opts := attestation.Options{Now: goTDXTime, AllowTrailingData: true, Source: src}

	_, err := attestation.Verify(context.Background(), quote, opts)
	if !errors.Is(err, validate.ErrTCBNotSupported) {
		t.Fatalf("verdict %v, want the README's: no TCB level matches", err)
	}
	want := []string{"/tdx/certification/v4/tcb?fmspc=50806F000000", "/tdx/certification/v4/qe/identity",
		"/sgx/certification/v4/pckcrl?ca=platform&encoding=der", "/sgx/certification/v4/rootcacrl"}
	if got := p.Requests(); !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}

	// From the cache: no request at all, the same verdict, also offline.
	for _, offline := range []bool{false, true} {
		src.Offline = offline
		if _, err := attestation.Verify(context.Background(), quote, opts); !errors.Is(err, validate.ErrTCBNotSupported) {
			t.Fatalf("from the cache (offline %v): %v", offline, err)
		}
		if got := p.Requests(); len(got) != 0 {
			t.Fatalf("cached collateral fetched again: %v", got)
		}
	}

	// Verified later, past the QE identity's nextUpdate (2023-07-…): offline refuses, naming the
	// expiry; online, it is fetched again.
	later := opts
	later.Now = goTDXTime.AddDate(0, 2, 0)
	if _, err := attestation.Verify(context.Background(), quote, later); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("expired cache entry offline: %v", err)
	}
	src.Offline = false
	attestation.Verify(context.Background(), quote, later)
	if got := p.Requests(); len(got) == 0 {
		t.Fatal("an expired entry was not fetched again")
	}

	// A damaged entry is refetched, not used.
	entries, _ := filepath.Glob(filepath.Join(cache.Dir, "*.json"))
	for _, e := range entries {
		os.WriteFile(e, []byte(`{"url":`), 0o600)
	}
	if _, err := attestation.Verify(context.Background(), quote, opts); !errors.Is(err, validate.ErrTCBNotSupported) {
		t.Fatalf("after damage: %v", err)
	}
	if got := p.Requests(); len(got) != 4 {
		t.Fatalf("damaged entries: %d requests, want 4", len(got))
	}

	// Offline with an empty cache: refused, naming what is missing.
	empty := &Intel{BaseURL: p.URL, Fetcher: Fetcher{Client: p.Client(), Cache: &Cache{Dir: t.TempDir()}, Offline: true}}
	opts.Source = empty
	if _, err := attestation.Verify(context.Background(), quote, opts); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "fetch collateral: offline") {
		t.Fatalf("offline without cache: %v", err)
	}
}

// TestIntelErrors: a service error names the URL and status; a response that is not collateral
// is refused and not cached.
func TestIntelErrors(t *testing.T) {
	p := pcstest.New(t, pcstest.Recorded(t))
	cache := &Cache{Dir: t.TempDir()}
	src := &Intel{BaseURL: p.URL, Fetcher: Fetcher{Client: p.Client(), Cache: cache}}
	// The SGX sample's FMSPC is served, but this TDX quote's is not known to this PCCS.
	quote := sample(t, "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin")
	_, err := src.Collateral(context.Background(), attestation.TDX, quote, attestation.Options{})
	if err == nil || !strings.Contains(err.Error(), "/tdx/certification/v4/tcb?fmspc=C0806F000000") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown FMSPC: %v", err)
	}
	p.Set("/tdx/certification/v4/tcb?fmspc=C0806F000000", pcstest.Doc{Body: []byte("<html>maintenance</html>"), Header: pcstest.HeaderTCBInfoChain, PEM: "x"})
	if _, err := src.Collateral(context.Background(), attestation.TDX, quote, attestation.Options{}); err == nil || !strings.Contains(err.Error(), "not collateral") {
		t.Fatalf("garbage response: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(cache.Dir, "*.json")); len(entries) != 0 {
		t.Fatalf("garbage cached: %v", entries)
	}
	// Another TEE's evidence is not Intel's business.
	if files, err := src.Collateral(context.Background(), attestation.SNP, nil, attestation.Options{}); err != nil || files != nil {
		t.Fatalf("SNP: %v %v", files, err)
	}
}

// TestIntelEncryptedPPID: for a quote naming its platform by an encrypted PPID, the PCK
// certificate is fetched first (pckcert, with the API key), then the rest, and the quote verifies.
func TestIntelEncryptedPPID(t *testing.T) {
	at := time.Date(2022, 12, 20, 0, 50, 4, 0, time.UTC)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pki, err := dcaptest.NewPKI(key, nil, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	quote, err := pki.Reforge(sample(t, "sgx/oasis_quote_v3_pck_chain.bin"), dcaptest.Options{EncryptedPPID: true})
	if err != nil {
		t.Fatal(err)
	}
	tcb, err := pki.Resign(sample(t, "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := pki.Resign(sample(t, "sgx/oasis_qeidentity_qe_v2.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rootCRL, pckCRL, err := pki.CRLs(at.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(cs ...*x509.Certificate) string {
		var b []byte
		for _, c := range cs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return string(b)
	}
	docs := map[string]pcstest.Doc{
		"/sgx/certification/v4/tcb?fmspc=00606A000000":          {Body: tcb, Header: pcstest.HeaderTCBInfoChain, PEM: pemOf(pki.TCBSigning, pki.Root)},
		"/sgx/certification/v4/qe/identity":                     {Body: qe, Header: pcstest.HeaderQEIdentityChain, PEM: pemOf(pki.TCBSigning, pki.Root)},
		"/sgx/certification/v4/pckcrl?ca=platform&encoding=der": {Body: pckCRL, Header: pcstest.HeaderPCKCRLChain, PEM: pemOf(pki.PCKCA, pki.Root)},
		"/sgx/certification/v4/rootcacrl":                       {Body: rootCRL},
	}
	// The pckcert query is the quote's own PPID, CPUSVN, PCESVN and PCE ID.
	q := quote[len(quote)-404:]
	v := url.Values{}
	v.Set("encrypted_ppid", hex.EncodeToString(q[:384]))
	v.Set("cpusvn", hex.EncodeToString(q[384:400]))
	v.Set("pcesvn", hex.EncodeToString(q[400:402]))
	v.Set("pceid", hex.EncodeToString(q[402:404]))
	docs["/sgx/certification/v4/pckcert?"+v.Encode()] = pcstest.Doc{Body: []byte(pemOf(pki.LastPCK)), Header: pcstest.HeaderPCKCertChain,
		PEM: pemOf(pki.PCKCA, pki.Root), APIKey: "subscription-key"}
	p := pcstest.New(t, docs)

	src := &Intel{BaseURL: p.URL, APIKey: "wrong", Fetcher: Fetcher{Client: p.Client()}}
	opts := attestation.Options{Now: at, IntelRoots: []*x509.Certificate{pki.Root}, Source: src}
	if _, err := attestation.Verify(context.Background(), quote, opts); err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "ppid=") {
		t.Fatalf("wrong API key: %v (and the PPID must not appear in errors)", err)
	}
	src.APIKey = "subscription-key"
	res, err := attestation.Verify(context.Background(), quote, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.TCBStatus != "SWHardeningNeeded" || !res.Collateral.RevocationChecked || res.Collateral.Source != attestation.SourceVerifier {
		t.Fatalf("status %q, collateral %+v", res.TCBStatus, res.Collateral)
	}
}
