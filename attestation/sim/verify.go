package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/memo"
)

func init() { attestation.RegisterVerifier(&Verifier{}) }

// maxClockSkew is how far in the future an endorsement's creation time may lie (host clocks drift).
const maxClockSkew = 5 * time.Minute

// Verifier checks sim evidence. It trusts exactly the platform certificates in Anchors and in
// attestation.Options.SimRoots, never a key carried by the evidence, and never another TEE's
// roots; with none it fails closed.
type Verifier struct {
	// Anchors are platform certificates trusted in addition to Options.SimRoots, for callers that
	// explicitly loaded one (LoadPlatformCertificate).
	Anchors []*x509.Certificate
}

// TEE implements attestation.Verifier.
func (*Verifier) TEE() attestation.TEE { return attestation.Sim }

// Match implements attestation.Verifier: sim evidence starts with Magic.
func (*Verifier) Match(evidence []byte) bool { return bytes.HasPrefix(evidence, []byte(Magic)) }

// Verify implements attestation.Verifier.
func (v *Verifier) Verify(ctx context.Context, evidence []byte, opts attestation.Options) (*attestation.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, err := parseEvidence(evidence, opts.AllowTrailingData)
	if err != nil {
		return nil, err
	}
	e, err := parseEndorsement(w.Endorsement)
	if err != nil {
		return nil, err
	}
	now := opts.Time()
	platformCert, platform, err := v.anchor(e.PlatformKeyID, opts.SimRoots, now)
	if err != nil {
		return nil, err
	}
	// An enclave's endorsement is the same in all its evidence: its signature check is pure
	// (platform key, endorsement, signature) and remembered, like dcap's QE report signature.
	endorsementKey := memo.Key([]byte("sim-endorsement"), e.PlatformKeyID, w.Endorsement, w.EndorsementSig)
	if _, ok := endorsementSigs.Get(endorsementKey); !ok {
		if !verifySig(platform, endorsementLabel, w.Endorsement, w.EndorsementSig) {
			return nil, errors.New("verify sim evidence: endorsement signature does not verify with the platform key")
		}
		endorsementSigs.Put(endorsementKey, true)
	}
	created := time.Unix(e.Created, 0).UTC()
	if created.After(now.Add(maxClockSkew)) {
		return nil, fmt.Errorf("verify sim evidence: endorsement created %s, after the verification time %s", created.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	pub, err := x509.ParsePKIXPublicKey(e.EnclaveKey)
	if err != nil {
		return nil, fmt.Errorf("verify sim evidence: enclave key: %w", err)
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("verify sim evidence: enclave key is not ECDSA P-256")
	}
	if !verifySig(ek, reportLabel, w.Report, w.ReportSig) {
		return nil, errors.New("verify sim evidence: report signature does not verify with the endorsed enclave key")
	}
	r, err := parseReport(w.Report)
	if err != nil {
		return nil, err
	}
	if d := sha256.Sum256(w.Endorsement); !bytes.Equal(d[:], r.EndorsementDigest) {
		return nil, errors.New("verify sim evidence: report is bound to another endorsement")
	}
	return &attestation.Result{
		TEE:          attestation.Sim,
		Verified:     true,
		Measurements: map[string]string{"measurement": e.Measurement},
		ReportData:   bytes.Clone(r.ReportData),
		Details: map[string]string{
			"simulated":       "true",
			"confidential":    "false",
			"runtime":         e.Runtime,
			"platform_key_id": hex.EncodeToString(e.PlatformKeyID),
			"endorsed_at":     created.Format(time.RFC3339),
			"format_version":  strconv.Itoa(formatVersion),
		},
		// The endorsement does not expire; the platform certificate does.
		ValidUntil: platformCert.NotAfter,
	}, nil
}

// Pure checks remembered across verifications (internal/memo): only successes are stored.
var (
	// platformCerts: CheckPlatformCertificate passed for the certificate (key: its DER).
	platformCerts = memo.New[bool]()
	// endorsementSigs: the endorsement's signature verified with the platform key it names.
	endorsementSigs = memo.New[bool]()
)

// anchor finds the trusted platform certificate whose key the endorsement names.
func (v *Verifier) anchor(keyID []byte, roots []*x509.Certificate, now time.Time) (*x509.Certificate, *ecdsa.PublicKey, error) {
	candidates := append(append([]*x509.Certificate(nil), v.Anchors...), roots...)
	trusted := 0
	for _, c := range candidates {
		if c == nil {
			continue
		}
		// Every anchor is checked, at every verification, but each certificate's check (with
		// its self-signature) is done once.
		certKey := memo.Key([]byte("sim-platform-cert"), c.Raw)
		if _, ok := platformCerts.Get(certKey); !ok {
			if err := CheckPlatformCertificate(c); err != nil {
				return nil, nil, fmt.Errorf("verify sim evidence: %w", err)
			}
			platformCerts.Put(certKey, true)
		}
		trusted++
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			continue
		}
		id := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if !bytes.Equal(id[:], keyID) {
			continue
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, nil, fmt.Errorf("verify sim evidence: platform certificate not valid at %s", now.UTC().Format(time.RFC3339))
		}
		return c, pub, nil
	}
	if trusted == 0 {
		return nil, nil, errors.New("verify sim evidence: no trusted sim platform certificate (pass one in Options.SimRoots, shelter --sim-root)")
	}
	return nil, nil, fmt.Errorf("verify sim evidence: platform key %x is not among the %d trusted sim platform certificates", keyID, trusted)
}

// CheckPlatformCertificate reports whether cert is what a sim platform certificate is: named as
// one, an ECDSA P-256 key, self-signed, and not a CA. A sim anchor signs endorsements only; were
// it a CA it could be mistaken for (or planted as) a root of another TEE's certificate chains.
func CheckPlatformCertificate(cert *x509.Certificate) error {
	if cert.Subject.CommonName != PlatformCommonName {
		return fmt.Errorf("certificate %q is not a sim platform certificate (want CN %q)", cert.Subject.CommonName, PlatformCommonName)
	}
	if cert.IsCA {
		return errors.New("sim platform certificate is a CA certificate; a sim anchor must not be able to sign certificates (export it again with rune sim-platform-cert: certificates of older rune versions were CAs)")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return errors.New("sim platform certificate does not hold an ECDSA P-256 key")
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return fmt.Errorf("sim platform certificate is not self-signed: %w", err)
	}
	return nil
}
