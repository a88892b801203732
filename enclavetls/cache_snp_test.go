package enclavetls

import (
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/snp/snptest"
)

// Attack tests of the verdict cache for SNP verdicts, which rest on the AMD chain (VCEK → ASK →
// ARK) and the ARK's CRL. There is no recorded SNP RA-TLS certificate, so the evidence is
// synthetic (attestation/snp/snptest): a Milan-shaped hierarchy whose ARK the verifier trusts as
// an explicit AMD root (Options.AMDRoots, as a caller adds one), and a report signed by its VCEK
// whose REPORT_DATA binds the certificate's key exactly as Identity does (SHA-256 of the claims
// buffer carrying the SPKI hash, then zeros). The attacker is whoever presents a certificate to a
// Verifier (a network attacker, a peer enclave, the node operator relaying it). Each test has the
// verifier accept and remember a genuine certificate, then shows that what the attack relies on
// is verified again and refused.

var (
	// snpAt is inside the validity of every part of the synthetic chain and CRL.
	snpAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// snpCRLNext is the CRL's nextUpdate, by default the first of the inputs to expire.
	snpCRLNext = snpAt.Add(7 * 24 * time.Hour)
	// snpVCEKNotAfter is the VCEK's notAfter by default.
	snpVCEKNotAfter = snpAt.Add(30 * 24 * time.Hour)
)

const snpMeasurementByte = 0xab

// snpMilanTCB is the REPORTED_TCB the VCEK's SPL extensions compose to in Milan's layout
// (BOOT_LOADER 3, TEE 0, SNP 8, MICROCODE 115).
const snpMilanTCB = uint64(115)<<56 | uint64(8)<<48 | 3

// snpPlatform is one synthetic SNP chip: its product chain, VCEK and the ARK's CRL.
type snpPlatform struct {
	chain *snptest.Chain
	chip  []byte
	vcek  *x509.Certificate
	key   *ecdsa.PrivateKey
	crl   []byte
}

// newSNPPlatform makes a Milan chain and a VCEK valid until vcekUntil, and a CRL (revoking
// nothing) valid until crlUntil.
func newSNPPlatform(t *testing.T, vcekUntil, crlUntil time.Time) *snpPlatform {
	t.Helper()
	c := snptest.NewChain(t, "Milan", false)
	chip := make([]byte, 64)
	for i := range chip {
		chip[i] = 0xc1
	}
	from := snpAt.Add(-24 * time.Hour)
	vcek, key := c.IssueEK(t, snptest.EKSpec{ProductName: "Milan-B1", HWID: chip, SPL: map[int]int{1: 3, 2: 0, 3: 8, 8: 115},
		NotBefore: from, NotAfter: vcekUntil})
	return &snpPlatform{chain: c, chip: chip, vcek: vcek, key: key, crl: snptest.IssueCRL(t, c.ARK, c.ARKKey, from, crlUntil)}
}

// options trusts the synthetic ARK and gives the ASK, the VCEK and the CRL as the verifier's
// collateral (as attestation/collateral's AMD KDS source would fetch them).
func (p *snpPlatform) options() attestation.Options {
	return attestation.Options{AMDRoots: []*x509.Certificate{p.chain.ARK}, Collateral: [][]byte{p.chain.ICA.Raw, p.vcek.Raw, p.crl}}
}

// cert is an Enclave-TLS (interoperable format) certificate for key whose evidence is a report
// of this chip with every MEASUREMENT byte m and REPORT_DATA binding the certificate's key and
// claims (others: extra claims such as a nonce).
func (p *snpPlatform) cert(t *testing.T, key *ecdsa.PrivateKey, m byte, others map[string][]byte) *x509.Certificate {
	t.Helper()
	ext := diceExtension(t, TagSNP, spkiOf(t, key), others, func(rd [64]byte) []byte {
		return snptest.BuildReport(t, snptest.ReportSpec{Version: 2, ChipID: p.chip, ReportedTCB: snpMilanTCB, CurrentTCB: snpMilanTCB,
			Measurement: m, ReportData: rd}, p.key)
	})
	return selfSigned(t, key, snpAt.Add(-time.Hour), snpAt.Add(365*24*time.Hour), ext)
}

// snpPolicy accepts SNP evidence with one of the measurements (SNP has no TCB status); extra
// adds rules.
func snpPolicy(t testing.TB, measurement byte, extra string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(fmt.Appendf(nil, `{"tees":{"snp":{"measurements":{"measurement":[%q]},"allow_unknown_tcb":true%s}}}`,
		strings.Repeat(fmt.Sprintf("%02x", measurement), 48), extra))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerdictCacheSNPReuse: a verdict on SNP evidence bound to the certificate's key is
// remembered (until the CRL's nextUpdate here), and the policy still runs on every use: a
// narrowed policy refuses the remembered peer at once.
func TestVerdictCacheSNPReuse(t *testing.T) {
	plat := newSNPPlatform(t, snpVCEKNotAfter, snpCRLNext)
	cert := plat.cert(t, newKey(t), snpMeasurementByte, nil)
	v := &Verifier{Options: plat.options(), Policy: snpPolicy(t, snpMeasurementByte, `,"require_crl":true`)}
	first, err := verifyAt(v, snpAt, cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := first.Result
	if res.TEE != attestation.SNP || res.Details["crl_checked"] != "true" || res.Collateral == nil || !res.ValidUntil.Equal(snpCRLNext) {
		t.Fatalf("first verification: %s crl_checked %s collateral %+v valid until %s", res.TEE, res.Details["crl_checked"], res.Collateral, res.ValidUntil)
	}
	at := snpAt.Add(time.Minute)
	p := mustReuse(t, v, at, cert, snpAt)
	if p.Result.TEE != attestation.SNP || !p.Result.Collateral.CheckedAt.Equal(at) {
		t.Fatalf("reused verdict: %s, collateral judged at %s (want %s)", p.Result.TEE, p.Result.Collateral.CheckedAt, at)
	}

	// The tenant narrows its policy to another guest: the remembered peer is refused at once.
	accepting := v.Policy
	v.Policy = snpPolicy(t, 0xcd, "")
	p, err = verifyAt(v, snpAt.Add(2*time.Minute), cert, nil)
	wantRefused(t, p, err, "policy: measurements.measurement")
	// Or refuses guests at VMPL 0 (the report's).
	v.Policy = snpPolicy(t, snpMeasurementByte, `,"details":{"vmpl":["1"]}`)
	p, err = verifyAt(v, snpAt.Add(3*time.Minute), cert, nil)
	wantRefused(t, p, err, "vmpl")
	v.Policy = accepting
	mustReuse(t, v, snpAt.Add(4*time.Minute), cert, snpAt)
}

// TestVerdictCacheSNPValidUntil: a verdict is not reused at or after the earliest expiry of what
// it rests on: the CRL's nextUpdate, or the VCEK's notAfter when that comes first. Attack (a
// peer whose VCEK or CRL has gone stale, or the node operator replaying an old certificate):
// present the remembered certificate after that time. It is verified again and refused with the
// expiry, as a first verification would be, and nothing stays remembered.
func TestVerdictCacheSNPValidUntil(t *testing.T) {
	for _, tc := range []struct {
		name                string
		vcekUntil, crlUntil time.Time
		until               time.Time
		failure             string
	}{
		{"CRL nextUpdate", snpVCEKNotAfter, snpCRLNext, snpCRLNext, "ARK-Milan CRL is valid"},
		{"VCEK notAfter", snpCRLNext, snpVCEKNotAfter, snpCRLNext, "certificate chain to ARK-Milan: x509: certificate has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plat := newSNPPlatform(t, tc.vcekUntil, tc.crlUntil)
			cert := plat.cert(t, newKey(t), snpMeasurementByte, nil)
			v := &Verifier{Options: plat.options(), Policy: snpPolicy(t, snpMeasurementByte, "")}
			t0 := tc.until.Add(-5 * time.Minute)
			first, err := verifyAt(v, t0, cert, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !first.Result.ValidUntil.Equal(tc.until) {
				t.Fatalf("ValidUntil %s, want %s", first.Result.ValidUntil, tc.until)
			}
			mustReuse(t, v, tc.until.Add(-time.Second), cert, t0)
			// At ValidUntil the inputs still hold (inclusive), but the verdict is not reused.
			if p, err := verifyAt(v, tc.until, cert, nil); err != nil || !p.VerifiedAt.Equal(tc.until) {
				t.Fatalf("at ValidUntil: %v, %+v: want a new verification", err, p)
			}
			p, err := verifyAt(v, tc.until.Add(time.Second), cert, nil)
			wantRefused(t, p, err, tc.failure)
			if n := len(v.verdicts().entries); n != 0 {
				t.Fatalf("%d verdicts remembered past their inputs", n)
			}
		})
	}
}

// TestVerdictCacheSNPRevoked: a verdict reached before the verifier had a CRL revoking the
// chain is not served once it has one. AMD's ARK CRL lists the ASKs (and ASVKs) the ARK
// revoked; attack: a peer whose ASK was revoked keeps presenting the certificate the verifier
// remembered. With the revoking CRL in the verifier's collateral (or sent as peer collateral),
// the certificate is verified again and refused as revoked.
func TestVerdictCacheSNPRevoked(t *testing.T) {
	plat := newSNPPlatform(t, snpVCEKNotAfter, snpCRLNext)
	cert := plat.cert(t, newKey(t), snpMeasurementByte, nil)
	v := &Verifier{Options: plat.options(), Policy: snpPolicy(t, snpMeasurementByte, "")}
	if _, err := verifyAt(v, snpAt, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, snpAt.Add(time.Minute), cert, snpAt)

	revoking := snptest.IssueCRL(t, plat.chain.ARK, plat.chain.ARKKey, snpAt.Add(-time.Hour), snpCRLNext, plat.chain.ICA.SerialNumber)
	const want = "SEV-Milan (serial"
	v.Options.Collateral = [][]byte{plat.chain.ICA.Raw, plat.vcek.Raw, revoking}
	p, err := verifyAt(v, snpAt.Add(2*time.Minute), cert, nil)
	wantRefused(t, p, err, want)
	wantRefused(t, p, err, "is revoked by the ARK-Milan CRL")
	// Alongside the old CRL (a verifier that added the new one to what it had).
	v.Options.Collateral = append(plat.options().Collateral, revoking)
	p, err = verifyAt(v, snpAt.Add(3*time.Minute), cert, nil)
	wantRefused(t, p, err, "is revoked by the ARK-Milan CRL")
	// As peer collateral: a CRL can only revoke, so the peer's counts too.
	v.Options = plat.options()
	v.Options.PeerCollateral = [][]byte{revoking}
	p, err = verifyAt(v, snpAt.Add(4*time.Minute), cert, nil)
	wantRefused(t, p, err, "is revoked by the ARK-Milan CRL")
	// Nothing refused was remembered: only the first verdict, under the first options.
	if n := len(v.verdicts().entries); n != 1 {
		t.Fatalf("%d verdicts remembered, want the first one only", n)
	}
}

// TestVerdictCacheSNPOtherCertificate: another certificate with the remembered one's key is
// verified in full. The holder of a leaked key (or a co-tenant guest given it) presents a
// certificate whose evidence is another guest's, bound to that key: refused by the policy. A
// network attacker without the key puts the genuine report into a certificate for its own key:
// the report binds the genuine key.
func TestVerdictCacheSNPOtherCertificate(t *testing.T) {
	plat := newSNPPlatform(t, snpVCEKNotAfter, snpCRLNext)
	key := newKey(t)
	genuine := plat.cert(t, key, snpMeasurementByte, nil)
	v := &Verifier{Options: plat.options(), Policy: snpPolicy(t, snpMeasurementByte, "")}
	if _, err := verifyAt(v, snpAt, genuine, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, snpAt.Add(time.Minute), genuine, snpAt)

	other := plat.cert(t, key, 0xcd, nil)
	if !other.PublicKey.(*ecdsa.PublicKey).Equal(genuine.PublicKey) {
		t.Fatal("test certificates do not share the key")
	}
	p, err := verifyAt(v, snpAt.Add(time.Minute), other, nil)
	wantRefused(t, p, err, "policy: measurements.measurement")

	var ext []byte
	for _, e := range genuine.Extensions {
		if e.Id.Equal(OIDTaggedEvidence) {
			ext = e.Value
		}
	}
	moved := selfSigned(t, newKey(t), genuine.NotBefore, genuine.NotAfter, pkix.Extension{Id: OIDTaggedEvidence, Value: ext})
	p, err = verifyAt(v, snpAt.Add(time.Minute), moved, nil)
	wantRefused(t, p, err, "pubkey-hash")
	mustReuse(t, v, snpAt.Add(2*time.Minute), genuine, snpAt)
}

// TestVerdictCacheSNPNonce: a verification that must bind a nonce never uses a remembered SNP
// verdict (the remembered certificate binds none and is refused) and never stores one.
func TestVerdictCacheSNPNonce(t *testing.T) {
	plat := newSNPPlatform(t, snpVCEKNotAfter, snpCRLNext)
	key := newKey(t)
	genuine := plat.cert(t, key, snpMeasurementByte, nil)
	v := &Verifier{Options: plat.options(), Policy: snpPolicy(t, snpMeasurementByte, "")}
	if _, err := verifyAt(v, snpAt, genuine, nil); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("nonce of this connection")
	p, err := verifyAt(v, snpAt.Add(time.Minute), genuine, nonce)
	wantRefused(t, p, err, "binds no nonce")

	bound := plat.cert(t, key, snpMeasurementByte, map[string][]byte{ClaimNonce: nonce})
	for i := range 2 {
		at := snpAt.Add(time.Duration(2+i) * time.Minute)
		if p, err := verifyAt(v, at, bound, nonce); err != nil || !p.Fresh || !p.VerifiedAt.Equal(at) {
			t.Fatalf("nonce-bound certificate, verification %d: %v, %+v: want a new verification each time", i, err, p)
		}
	}
	opts := plat.options()
	if _, ok := v.verdicts().entries[verdictKey(&opts, bound.Raw, nonce)]; ok {
		t.Fatal("a nonce-bound verdict was remembered")
	}
	if n := len(v.verdicts().entries); n != 1 {
		t.Fatalf("%d verdicts remembered, want the nonce-free one only", n)
	}
}
