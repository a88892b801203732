package enclavetls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
)

// Attack tests of the verdict cache for hardware verdicts that rest on collateral, with recorded
// evidence: the rats-tls sample certificates (a real SGX quote bound to the certificate's key,
// testdata/attestation/ra-tls) verified with Intel's real TCB info, QE identity and TCB signing
// chain of December 2022, and real SGX and TDX quotes re-signed under a test Intel PKI (trusted as
// an explicit Intel root) where the test must choose the report data or the key. The attacker is
// whoever presents a certificate to a Verifier (a network attacker, a peer enclave, the node
// operator relaying it). Each test has the verifier accept and remember a genuine certificate,
// then shows that what the attack relies on is verified again and refused.

var (
	// sgxAt is inside the validity of every piece of the recorded SGX collateral.
	sgxAt = time.Date(2022, 12, 20, 0, 50, 4, 0, time.UTC)
	// sgxQEIdentityNext is the QE identity's nextUpdate, the first of the collateral to expire.
	sgxQEIdentityNext = time.Date(2023, 1, 15, 12, 45, 36, 0, time.UTC)
	// sgxOldest is the QE identity's issueDate, the oldest collateral.
	sgxOldest = time.Date(2022, 12, 16, 12, 45, 36, 0, time.UTC)
)

const ratlsMREnclave = "d74f2eb87fa3c64c40d16e35a6f8d3259e3dd931a0bcce0637e33ada67df0b52" // ratls_legacy_sgx_ecdsa_rsa_sha256.pem

// sgxCollateral is Intel's TCB info for FMSPC 00606A000000, the QE identity and the TCB signing
// chain, as recorded.
func sgxCollateral(t testing.TB) [][]byte {
	t.Helper()
	return [][]byte{
		readSample(t, "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"),
		readSample(t, "sgx/oasis_qeidentity_qe_v2.json"),
		readSample(t, "sgx/oasis_tcb_signing_chain.pem"),
	}
}

// teePolicy accepts tee evidence with one of the measurements (name: mrenclave or mrtd) and TCB
// status; extra adds rules (`,"require_crl":true`).
func teePolicy(t testing.TB, tee attestation.TEE, name string, measurements []string, statuses, extra string) *policy.Policy {
	t.Helper()
	q := `"` + strings.Join(measurements, `","`) + `"`
	p, err := policy.Parse(fmt.Appendf(nil, `{"tees":{%q:{"measurements":{%q:[%s]},"tcb_statuses":[%s]%s}}}`, tee, name, q, statuses, extra))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sgxVerifier verifies the rats-tls sample with the recorded collateral and accepts it.
func sgxVerifier(t testing.TB) *Verifier {
	t.Helper()
	return &Verifier{
		Options: attestation.Options{Collateral: sgxCollateral(t)},
		Policy:  teePolicy(t, attestation.SGX, "mrenclave", []string{ratlsMREnclave}, `"OutOfDate"`, ""),
	}
}

// TestVerdictCacheSGXReuse: a verdict on real SGX evidence that rests on Intel collateral is
// remembered until the collateral's first expiry, and the policy still runs on every use: a
// narrowed policy, or one that now demands CRLs, refuses the remembered peer at once.
func TestVerdictCacheSGXReuse(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	v := sgxVerifier(t)
	first, err := verifyAt(v, sgxAt, cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := first.Result
	if res.TEE != attestation.SGX || res.TCBStatus != "OutOfDate" || res.Collateral == nil || !res.ValidUntil.Equal(sgxQEIdentityNext) {
		t.Fatalf("first verification: %s %q collateral %+v valid until %s", res.TEE, res.TCBStatus, res.Collateral, res.ValidUntil)
	}
	at := sgxAt.Add(time.Minute)
	p := mustReuse(t, v, at, cert, sgxAt)
	if p.Result.TCBStatus != "OutOfDate" || !p.Result.Collateral.CheckedAt.Equal(at) || !first.Result.Collateral.CheckedAt.Equal(sgxAt) {
		t.Fatalf("reused verdict: %q, collateral judged at %s (want %s; the first at %s)", p.Result.TCBStatus,
			p.Result.Collateral.CheckedAt, at, first.Result.Collateral.CheckedAt)
	}

	// The tenant narrows its policy to another enclave: the remembered peer is refused at once.
	accepting := v.Policy
	v.Policy = teePolicy(t, attestation.SGX, "mrenclave", []string{strings.Repeat("ab", 32)}, `"OutOfDate"`, "")
	p, err = verifyAt(v, sgxAt.Add(2*time.Minute), cert, nil)
	wantRefused(t, p, err, "policy: measurements.mrenclave")
	// Or now demands revocation lists, which this verdict did not apply.
	v.Policy = teePolicy(t, attestation.SGX, "mrenclave", []string{ratlsMREnclave}, `"OutOfDate"`, `,"require_crl":true`)
	p, err = verifyAt(v, sgxAt.Add(3*time.Minute), cert, nil)
	wantRefused(t, p, err, "require_crl")
	// Or accepts only UpToDate platforms.
	v.Policy = teePolicy(t, attestation.SGX, "mrenclave", []string{ratlsMREnclave}, `"UpToDate"`, "")
	p, err = verifyAt(v, sgxAt.Add(4*time.Minute), cert, nil)
	wantRefused(t, p, err, "tcb_statuses")
	v.Policy = accepting
	mustReuse(t, v, sgxAt.Add(5*time.Minute), cert, sgxAt)
}

// TestVerdictCacheSGXValidUntil: a verdict is not reused at or after the earliest expiry of what
// it rests on (here the QE identity's nextUpdate). Attack (a peer whose collateral has gone
// stale, or the node operator replaying an old certificate): present the remembered certificate
// after that time. It is verified again and refused, as a first verification would be.
func TestVerdictCacheSGXValidUntil(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	v := sgxVerifier(t)
	t0 := sgxQEIdentityNext.Add(-5 * time.Minute)
	if _, err := verifyAt(v, t0, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, sgxQEIdentityNext.Add(-time.Second), cert, t0)
	// At ValidUntil the collateral still holds (nextUpdate is inclusive), but the verdict is not
	// reused: it is reached again.
	if p, err := verifyAt(v, sgxQEIdentityNext, cert, nil); err != nil || !p.VerifiedAt.Equal(sgxQEIdentityNext) {
		t.Fatalf("at ValidUntil: %v, %+v: want a new verification", err, p)
	}
	p, err := verifyAt(v, sgxQEIdentityNext.Add(time.Second), cert, nil)
	wantRefused(t, p, err, "QE identity (QE): expired")
	if n := len(v.verdicts().entries); n != 0 {
		t.Fatalf("%d verdicts remembered past their collateral", n)
	}
}

// TestVerdictCacheSGXCollateralAge: a policy's max_collateral_age is judged at each use of a
// remembered verdict, against the collateral it rests on: a verdict whose collateral grows too
// old between store and reuse is refused, exactly as a fresh verification at that time refuses
// it. Attack: a peer whose certificate was accepted with collateral just young enough keeps
// presenting it (the verdict would otherwise be served for MaxVerdictAge). Before the reuse
// judged CheckedAt anew, the verdict carried its first verification's time and passed.
func TestVerdictCacheSGXCollateralAge(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	// Young enough for five more minutes after sgxAt.
	maxAge := sgxAt.Sub(sgxOldest) + 5*time.Minute
	pol := teePolicy(t, attestation.SGX, "mrenclave", []string{ratlsMREnclave}, `"OutOfDate"`,
		fmt.Sprintf(`,"max_collateral_age":%q`, maxAge.String()))
	v := sgxVerifier(t)
	v.Policy = pol
	if _, err := verifyAt(v, sgxAt, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, sgxAt.Add(4*time.Minute), cert, sgxAt)
	late := sgxAt.Add(6 * time.Minute) // inside MaxVerdictAge and ValidUntil
	p, err := verifyAt(v, late, cert, nil)
	wantRefused(t, p, err, fmt.Sprintf("max_collateral_age: collateral issued 2022-12-16T12:45:36Z is %s old at %s", late.Sub(sgxOldest), late.Format(time.RFC3339)))
	if n := len(v.verdicts().entries); n != 1 {
		t.Fatalf("%d entries: the verdict itself still holds for younger-collateral policies", n)
	}
	// A verifier without a cache refuses it the same way at that time.
	fresh := sgxVerifier(t)
	fresh.Policy, fresh.CacheSize = pol, -1
	_, freshErr := verifyAt(fresh, late, cert, nil)
	if freshErr == nil || freshErr.Error() != err.Error() {
		t.Fatalf("fresh verification at %s: %v; reused: %v", late, freshErr, err)
	}
}

// TestVerdictCacheSGXOtherCertificate: the remembered certificate's evidence in another
// certificate is verified in full. A network attacker without the key takes the genuine
// rats-tls certificate and extends its validity (the signature no longer matches), or puts its
// quote into a certificate for its own key (the quote binds the genuine key).
func TestVerdictCacheSGXOtherCertificate(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	v := sgxVerifier(t)
	if _, err := verifyAt(v, sgxAt, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, sgxAt, cert, sgxAt)

	notAfter := []byte(cert.NotAfter.UTC().Format("060102150405Z"))
	i := bytes.Index(cert.Raw, notAfter)
	if i < 0 {
		t.Fatal("notAfter not found in the certificate")
	}
	der := bytes.Clone(cert.Raw)
	copy(der[i:], cert.NotAfter.AddDate(1, 0, 0).UTC().Format("060102150405Z"))
	extended, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p, err := verifyAt(v, sgxAt, extended, nil)
	wantRefused(t, p, err, "not validly self-signed")

	var quote []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDLegacySGXECDSAQuote) {
			quote = e.Value
		}
	}
	moved := selfSigned(t, newKey(t), cert.NotBefore, cert.NotAfter, pkix.Extension{Id: OIDLegacySGXECDSAQuote, Value: quote})
	p, err = verifyAt(v, sgxAt, moved, nil)
	wantRefused(t, p, err, "the evidence belongs to another key")
	mustReuse(t, v, sgxAt, cert, sgxAt)
}

// TestVerdictCacheSGXVerifierOptions: a verdict is reused only with the trust anchors and
// collateral it was reached with. With other collateral (the QE identity left out) the same
// certificate is verified again, and its TCB status is then undecided, which the policy refuses;
// with other Intel roots, peer collateral or strictness it is verified again.
func TestVerdictCacheSGXVerifierOptions(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	v := sgxVerifier(t)
	if _, err := verifyAt(v, sgxAt, cert, nil); err != nil {
		t.Fatal(err)
	}
	full := v.Options
	col := sgxCollateral(t)
	v.Options.Collateral = [][]byte{col[0], col[2]}
	p, err := verifyAt(v, sgxAt.Add(time.Second), cert, nil)
	wantRefused(t, p, err, "allow_unknown_tcb")

	key := newKey(t)
	pki, err := dcaptest.NewPKI(key, nil, sgxAt.Add(-time.Hour), sgxAt.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i, change := range []func(o *attestation.Options){
		func(o *attestation.Options) { o.IntelRoots = []*x509.Certificate{pki.Root} },
		func(o *attestation.Options) { o.PeerCollateral = [][]byte{col[2]} },
		func(o *attestation.Options) { o.AllowTrailingData = true },
		func(o *attestation.Options) { o.Collateral = append(o.Collateral[:3:3], pki.IssuerChainPEM()) },
	} {
		v.Options = full
		change(&v.Options)
		at := sgxAt.Add(time.Duration(10+i) * time.Second)
		if p, err := verifyAt(v, at, cert, nil); err != nil || !p.VerifiedAt.Equal(at) {
			t.Fatalf("option change %d: %v, %+v: want a new verification", i, err, p)
		}
	}
	v.Options = full
	mustReuse(t, v, sgxAt.Add(time.Minute), cert, sgxAt)
}

// countingSource is a collateral source (as collateral.Intel fetching from Intel PCS) that
// answers with fixed files and counts its calls.
type countingSource struct {
	files [][]byte
	calls atomic.Int32
}

func (s *countingSource) Collateral(context.Context, attestation.TEE, []byte, attestation.Options) ([][]byte, error) {
	s.calls.Add(1)
	return s.files, nil
}

type funcSource func() [][]byte

func (f funcSource) Collateral(context.Context, attestation.TEE, []byte, attestation.Options) ([][]byte, error) {
	return f(), nil
}

// TestVerdictCacheSGXCollateralSource: with a collateral source (Intel PCS, a PCCS, AMD KDS), a
// verdict is remembered like any other: until the fetched collateral's first expiry and at most
// MaxVerdictAge, so that what the service publishes meanwhile (a revocation, a new TCB info) is
// seen within MaxVerdictAge. It is reused only with the same source.
func TestVerdictCacheSGXCollateralSource(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	src := &countingSource{files: sgxCollateral(t)}
	v := sgxVerifier(t)
	v.Options.Collateral = nil
	v.Options.Source = src
	if _, err := verifyAt(v, sgxAt, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, sgxAt.Add(time.Minute), cert, sgxAt)
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (the reuse fetches nothing)", n)
	}
	// After MaxVerdictAge the collateral is fetched and the evidence verified again.
	late := sgxAt.Add(MaxVerdictAge + time.Second)
	if p, err := verifyAt(v, late, cert, nil); err != nil || !p.VerifiedAt.Equal(late) || src.calls.Load() != 2 {
		t.Fatalf("after MaxVerdictAge: %v, %+v, %d fetches", err, p, src.calls.Load())
	}
	// Another source: verified again with what it fetches.
	other := &countingSource{files: sgxCollateral(t)}
	v.Options.Source = other
	at := late.Add(time.Second)
	if p, err := verifyAt(v, at, cert, nil); err != nil || !p.VerifiedAt.Equal(at) || other.calls.Load() != 1 {
		t.Fatalf("another source: %v, %+v", err, p)
	}
	// A source that cannot be told from another (a function value): nothing is remembered.
	files := sgxCollateral(t)
	v.Options.Source = funcSource(func() [][]byte { return files })
	for i := range 2 {
		at := late.Add(time.Duration(2+i) * time.Second)
		if p, err := verifyAt(v, at, cert, nil); err != nil || !p.VerifiedAt.Equal(at) {
			t.Fatalf("function source, verification %d: %v, %+v", i, err, p)
		}
	}
}

// dcapCert is an Enclave-TLS (interoperable format) certificate whose evidence is a recorded
// quote re-signed under pki with report data binding the certificate's key, for key; edit may
// change the quote's body first (another enclave's measurement).
func dcapCert(t *testing.T, pki *dcaptest.PKI, key *ecdsa.PrivateKey, quoteFile string, at time.Time, edit func(q []byte), others map[string][]byte) *x509.Certificate {
	t.Helper()
	ext := diceExtension(t, TagIntelQuote, spkiOf(t, key), others, func(rd [64]byte) []byte {
		q := bytes.Clone(readSample(t, quoteFile))
		if edit != nil {
			edit(q)
		}
		forged, err := pki.Reforge(q, dcaptest.Options{ReportData: &rd})
		if err != nil {
			t.Fatal(err)
		}
		return forged
	})
	return selfSigned(t, key, at.Add(-time.Hour), at.Add(time.Hour), ext)
}

// TestVerdictCacheDCAPSameKey: for SGX and TDX quotes, a certificate for the remembered one's key
// whose evidence is another enclave's (the holder of a leaked key, or a co-tenant enclave given
// it) is verified in full and refused by the policy; a verification that must bind a nonce never
// reuses the verdict; and a narrowed policy refuses the remembered peer at once.
func TestVerdictCacheDCAPSameKey(t *testing.T) {
	for _, tc := range []struct {
		tee                      attestation.TEE
		quote, tcbInfo, qe, name string
		at                       time.Time
		offset, size             int // of the measurement in the quote (after the 48-byte header)
	}{
		{attestation.SGX, "sgx/oasis_quote_v3_pck_chain.bin", "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", "sgx/oasis_qeidentity_qe_v2.json",
			"mrenclave", sgxAt, 48 + 64, 32},
		{attestation.TDX, "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin", "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json", "tdx/oasis_qeidentity_td_qe_2024-09.json",
			"mrtd", time.Date(2024, 9, 2, 7, 43, 52, 0, time.UTC), 48 + 136, 48},
	} {
		t.Run(string(tc.tee), func(t *testing.T) {
			pki, err := dcaptest.NewPKI(newKey(t), nil, tc.at.Add(-24*time.Hour), tc.at.Add(365*24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			tcb, err := pki.Resign(readSample(t, tc.tcbInfo), nil)
			if err != nil {
				t.Fatal(err)
			}
			qe, err := pki.Resign(readSample(t, tc.qe), nil)
			if err != nil {
				t.Fatal(err)
			}
			key := newKey(t)
			genuine := dcapCert(t, pki, key, tc.quote, tc.at, nil, nil)
			other := dcapCert(t, pki, key, tc.quote, tc.at, func(q []byte) {
				for i := range tc.size {
					q[tc.offset+i] ^= 0xff
				}
			}, nil)
			v := &Verifier{Options: attestation.Options{IntelRoots: []*x509.Certificate{pki.Root}, Collateral: [][]byte{tcb, qe, pki.IssuerChainPEM()}}}
			first, err := VerifyCertificate(context.Background(), genuine, attestation.Options{Now: tc.at, IntelRoots: v.Options.IntelRoots, Collateral: v.Options.Collateral}, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := first.Result.Measurements[tc.name]
			v.Policy = teePolicy(t, tc.tee, tc.name, []string{m}, `"UpToDate","SWHardeningNeeded","OutOfDate"`, "")
			if _, err := verifyAt(v, tc.at, genuine, nil); err != nil {
				t.Fatal(err)
			}
			p := mustReuse(t, v, tc.at.Add(time.Minute), genuine, tc.at)
			if p.Result.Collateral == nil || p.Result.ValidUntil.IsZero() {
				t.Fatalf("remembered verdict without collateral or ValidUntil: %+v", p.Result)
			}
			if !other.PublicKey.(*ecdsa.PublicKey).Equal(genuine.PublicKey) {
				t.Fatal("test certificates do not share the key")
			}
			p, err = verifyAt(v, tc.at.Add(time.Minute), other, nil)
			wantRefused(t, p, err, "policy: measurements."+tc.name)

			// A nonce is demanded: the remembered verdict is not used, the certificate binds none.
			p, err = verifyAt(v, tc.at.Add(time.Minute), genuine, []byte("nonce of this connection"))
			wantRefused(t, p, err, "binds no nonce")
			nonce := []byte("nonce of this connection")
			bound := dcapCert(t, pki, key, tc.quote, tc.at, nil, map[string][]byte{ClaimNonce: nonce})
			at := tc.at.Add(2 * time.Minute)
			if p, err := verifyAt(v, at, bound, nonce); err != nil || !p.Fresh || !p.VerifiedAt.Equal(at) {
				t.Fatalf("nonce-bound certificate: %v, %+v", err, p)
			}
			if _, ok := v.verdicts().entries[verdictKey(&attestation.Options{IntelRoots: v.Options.IntelRoots, Collateral: v.Options.Collateral}, bound.Raw, nonce)]; ok {
				t.Fatal("a nonce-bound verdict was remembered")
			}

			// The policy narrows: refused at once.
			h := sha256.Sum256([]byte("another enclave"))
			v.Policy = teePolicy(t, tc.tee, tc.name, []string{hex.EncodeToString(h[:])}, `"UpToDate"`, "")
			p, err = verifyAt(v, tc.at.Add(3*time.Minute), genuine, nil)
			wantRefused(t, p, err, "policy: measurements."+tc.name)
		})
	}
}
