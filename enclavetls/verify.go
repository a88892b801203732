package enclavetls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	// The TEE verifiers register themselves; Enclave-TLS must know every format it may meet.
	_ "github.com/inclavare-containers/inclavare-go/attestation/sgx"
	_ "github.com/inclavare-containers/inclavare-go/attestation/sim"
	_ "github.com/inclavare-containers/inclavare-go/attestation/snp"
	_ "github.com/inclavare-containers/inclavare-go/attestation/tdx"
)

// Format names how a certificate carries its evidence.
type Format string

const (
	// FormatDICE is the interoperable RA-TLS format (TCG DICE tagged evidence and claims).
	FormatDICE Format = "interoperable-ra-tls"
	// FormatLegacy is the sgx-ra-tls / Enclave-TLS format of 1.2.840.113741.1337.* extensions.
	FormatLegacy Format = "legacy-sgx-ra-tls"
)

// Peer is what the verification of a certificate established.
type Peer struct {
	Certificate *x509.Certificate
	Format      Format
	// Result is the TEE verifier's result for the evidence in the certificate.
	Result *attestation.Result
	// Claims are the custom claims other than pubkey-hash (FormatDICE only), including "nonce"
	// and "enclave-tls-challenge" when present.
	Claims map[string][]byte
	// Fresh is true when the evidence bound the nonce the verifier expected for this connection.
	Fresh bool
	// PolicyChecked is true when a policy accepted Result.
	PolicyChecked bool
	// VerifiedAt is the verification time at which the evidence was checked: this handshake's,
	// or an earlier one's when a Verifier reused its verdict (see "Verdict cache").
	VerifiedAt time.Time
}

// Challenge returns the peer's enclave-tls-challenge claim, if any.
func (p *Peer) Challenge() []byte { return p.Claims[ClaimChallenge] }

// ErrNoEvidence is returned for a certificate that carries no evidence extension.
var ErrNoEvidence = errors.New("certificate carries no attestation evidence")

// VerifyCertificate checks an RA-TLS certificate without any policy: its self-signature and
// validity at opts.Time(), the evidence (signatures and chain to a trusted root, by the TEE's
// verifier, with opts and any endorsements in the certificate), and that the evidence's report
// data binds the certificate's public key. When nonce is not nil, the evidence must also bind it
// (FormatDICE "nonce" claim; legacy certificates cannot). The caller decides what to accept
// (Verifier applies a policy): a nil error here says only that the evidence is genuine and
// belongs to this certificate's key.
func VerifyCertificate(ctx context.Context, cert *x509.Certificate, opts attestation.Options, nonce []byte) (*Peer, error) {
	if cert == nil {
		return nil, errors.New("no certificate")
	}
	now := opts.Time()
	// One time for every check below, and for the Peer's VerifiedAt.
	opts.Now = now
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("certificate valid %s to %s, not at %s", cert.NotBefore.UTC().Format(time.RFC3339),
			cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	// RA-TLS certificates are self-signed: the signature covers the fields the evidence does not
	// (validity, extensions). A CA-signed certificate is refused rather than half-checked.
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("certificate is not validly self-signed: %w", err)
	}
	var dice, endorse, legacy []int
	var legacyCollateral [][]byte
	unsupported := ""
	hasSGXQuote := slices.ContainsFunc(cert.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(OIDLegacySGXECDSAQuote) })
	for i, e := range cert.Extensions {
		switch {
		case e.Id.Equal(OIDTaggedEvidence):
			dice = append(dice, i)
		case e.Id.Equal(OIDEndorsementManifest):
			endorse = append(endorse, i)
		case e.Id.Equal(OIDLegacyPCKCert), e.Id.Equal(OIDLegacyTCBInfo), e.Id.Equal(OIDLegacyTCBSignChain),
			e.Id.Equal(OIDLegacyPCKSignChain) && hasSGXQuote && !isTDXQuote(e.Value):
			// sgx-ra-tls collateral beside its quote: chosen by the peer, ranked as such.
			if b := bytes.TrimRight(e.Value, "\x00"); len(bytes.TrimSpace(b)) > 0 {
				legacyCollateral = append(legacyCollateral, b)
			}
		default:
			if _, ok := legacyVerifiableEvidences[e.Id.String()]; ok {
				legacy = append(legacy, i)
			} else if why, ok := legacyUnsupportedFormats[e.Id.String()]; ok && unsupported == "" {
				unsupported = fmt.Sprintf("%s (extension %s)", why, e.Id)
			}
		}
	}
	switch {
	case len(dice) > 1 || len(endorse) > 1:
		return nil, errors.New("certificate repeats an evidence or endorsement extension")
	case len(dice) == 1 && len(legacy) > 0:
		return nil, errors.New("certificate carries both interoperable and legacy evidence")
	case len(dice) == 1:
		var endorsements []byte
		if len(endorse) == 1 {
			endorsements = cert.Extensions[endorse[0]].Value
		}
		return verifyDICE(ctx, cert, cert.Extensions[dice[0]].Value, endorsements, opts, nonce)
	case len(legacy) > 1:
		return nil, errors.New("certificate carries several legacy evidence extensions")
	case len(legacy) == 1:
		if nonce != nil {
			return nil, errors.New("legacy RA-TLS certificates carry no nonce: they cannot prove freshness")
		}
		e := cert.Extensions[legacy[0]]
		opts.PeerCollateral = append(slices.Clip(opts.PeerCollateral), legacyCollateral...)
		return verifyLegacy(ctx, cert, legacyVerifiableEvidences[e.Id.String()], e.Value, opts)
	case unsupported != "":
		return nil, fmt.Errorf("certificate carries %s: not supported", unsupported)
	}
	return nil, ErrNoEvidence
}

func verifyDICE(ctx context.Context, cert *x509.Certificate, ext, endorsements []byte, opts attestation.Options, nonce []byte) (*Peer, error) {
	te, err := ParseTaggedEvidence(ext)
	if err != nil {
		return nil, err
	}
	tees, err := teesForTag(te.Tag)
	if err != nil {
		return nil, err
	}
	claims, err := ParseClaims(te.ClaimsBuffer)
	if err != nil {
		return nil, err
	}
	want, err := hashSPKI(claims.HashAlgorithm, cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(want, claims.PublicKeyHash) != 1 {
		return nil, errors.New("pubkey-hash claim does not match the certificate's public key")
	}
	if endorsements != nil {
		e, err := ParseEndorsements(endorsements)
		if err != nil {
			return nil, err
		}
		// The peer chose these: they go where the TEE verifier ranks them below its own.
		opts.PeerCollateral = append(slices.Clip(opts.PeerCollateral), e.Collateral()...)
	}
	res, err := verifyEvidence(ctx, tees, te.Evidence, opts)
	if err != nil {
		return nil, err
	}
	if err := checkReportData(res.ReportData, te.ReportData(), "SHA-256 of the claims buffer"); err != nil {
		return nil, err
	}
	p := &Peer{Certificate: cert, Format: FormatDICE, Result: res, Claims: claims.Others, VerifiedAt: opts.Now}
	if nonce != nil {
		got, ok := claims.Others[ClaimNonce]
		if !ok {
			return nil, errors.New("evidence binds no nonce: not fresh")
		}
		if subtle.ConstantTimeCompare(got, nonce) != 1 {
			return nil, errors.New("evidence binds another nonce: replayed or stale")
		}
		p.Fresh = true
	}
	return p, nil
}

// isTDXQuote reports whether b is evidence the TDX verifier recognises (rats-tls's use of .8).
func isTDXQuote(b []byte) bool {
	v, err := attestation.Detect(b)
	return err == nil && v.TEE() == attestation.TDX
}

// verifyLegacy checks the format older rats-tls/Enclave-TLS wrote: raw evidence in a
// 1.2.840.113741.1337.* extension whose report data is SHA-256 of the public key (PKCS#1
// RSAPublicKey for RSA keys, SubjectPublicKeyInfo for EC keys), zero-padded.
func verifyLegacy(ctx context.Context, cert *x509.Certificate, tee attestation.TEE, evidence []byte, opts attestation.Options) (*Peer, error) {
	var keyBytes []byte
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		keyBytes = x509.MarshalPKCS1PublicKey(k)
	case *ecdsa.PublicKey:
		keyBytes = cert.RawSubjectPublicKeyInfo
	default:
		return nil, fmt.Errorf("legacy RA-TLS certificate with a %T key", cert.PublicKey)
	}
	res, err := verifyEvidence(ctx, []attestation.TEE{tee}, evidence, opts)
	if err != nil {
		return nil, err
	}
	var want [attestation.ReportDataSize]byte
	h := sha256.Sum256(keyBytes)
	copy(want[:], h[:])
	if err := checkReportData(res.ReportData, want, "SHA-256 of the certificate's public key"); err != nil {
		return nil, err
	}
	return &Peer{Certificate: cert, Format: FormatLegacy, Result: res, VerifiedAt: opts.Now}, nil
}

func verifyEvidence(ctx context.Context, tees []attestation.TEE, evidence []byte, opts attestation.Options) (*attestation.Result, error) {
	v, err := attestation.Detect(evidence)
	if err != nil {
		return nil, fmt.Errorf("evidence in certificate: %w", err)
	}
	if !slices.Contains(tees, v.TEE()) {
		return nil, fmt.Errorf("evidence is %s evidence, but its tag says %v", v.TEE(), tees)
	}
	res, err := attestation.VerifyWith(ctx, v, evidence, opts)
	if err != nil {
		return nil, fmt.Errorf("certificate evidence (%s): %w", v.TEE(), err)
	}
	if res == nil || !res.Verified {
		return nil, fmt.Errorf("certificate evidence (%s): not verified", v.TEE())
	}
	return res, nil
}

func checkReportData(got []byte, want [attestation.ReportDataSize]byte, what string) error {
	if len(got) != attestation.ReportDataSize || subtle.ConstantTimeCompare(got, want[:]) != 1 {
		if len(got) >= 32 && bytes.Equal(got[:32], want[:32]) {
			return errors.New("report data binds the certificate key but its last 32 bytes are not zero")
		}
		return fmt.Errorf("report data is not the %s: the evidence belongs to another key", what)
	}
	return nil
}

// Verifier decides whether a peer's certificate is acceptable: VerifyCertificate, then a
// reference-value policy, then an optional check of the caller's own.
type Verifier struct {
	// Options are the roots, collateral and time for the TEE verifiers.
	Options attestation.Options
	// Policy is required: a verifier without reference values would accept any genuine TEE
	// running anything.
	Policy *policy.Policy
	// Check, when set, runs last on a peer the policy accepted; an error rejects the peer.
	Check func(*Peer) error
	// RequireFresh makes the peer's evidence bind a nonce of this connection (see the package
	// documentation).
	RequireFresh bool
	// CacheSize bounds how many accepted certificates the verifier remembers, to accept them
	// again without verifying their evidence while the verdict holds (see the package
	// documentation, "Verdict cache"): zero means DefaultCacheSize, negative turns the cache
	// off. It is read once, at the first verification.
	CacheSize int

	cache struct {
		once sync.Once
		c    *verdictCache // nil: off
	}
}

// verdicts returns the verifier's cache, nil when it is off.
func (v *Verifier) verdicts() *verdictCache {
	v.cache.once.Do(func() {
		switch {
		case v.CacheSize == 0:
			v.cache.c = newVerdictCache(DefaultCacheSize)
		case v.CacheSize > 0:
			v.cache.c = newVerdictCache(v.CacheSize)
		}
	})
	return v.cache.c
}

func (v *Verifier) validate() error {
	if v.Policy == nil {
		return errors.New("enclave-tls verifier has no policy")
	}
	return nil
}

// VerifyCertificate verifies cert and applies the policy and Check. nonce is the value the
// evidence must bind (nil: none); with RequireFresh a nil nonce is an error.
func (v *Verifier) VerifyCertificate(ctx context.Context, cert *x509.Certificate, nonce []byte) (*Peer, error) {
	if err := v.validate(); err != nil {
		return nil, err
	}
	if v.RequireFresh && nonce == nil {
		return nil, errors.New("fresh evidence required but no nonce to check it against")
	}
	if cert == nil {
		return nil, errors.New("no certificate")
	}
	opts := v.Options
	// The wall clock only: every validity check reads it, and the verdict cache must compare its
	// times the same way (time.Now's monotonic reading would hide a clock set back or forward).
	now := opts.Time().Round(0)
	opts.Now = now
	// A verdict is reused only where no freshness is asked for (a nonce-bound verification
	// always checks the evidence), and only with the collateral source it was reached with (see
	// "Verdict cache" for what a source's later answers can change).
	cache := v.verdicts()
	source, named := sourceIdentity(opts.Source)
	if nonce != nil || !named {
		cache = nil
	}
	var key [32]byte
	var p *Peer
	if cache != nil {
		key = verdictKey(&opts, cert.Raw, nonce)
		p = cache.get(key, now, cert, source)
	}
	reused := p != nil
	// The policy and Check run every time, on a reused verdict too: they may have changed, and
	// they are cheap.
	var policyErr error
	if reused {
		// A collateral Source may by now serve other collateral than the verdict rests on (a
		// younger TCB info, say, where max_collateral_age refuses the verdict's): a reused verdict
		// the policy refuses is then reached afresh, so that the cache never refuses what a
		// verification now would accept. Without a Source the inputs are the verdict's own, and a
		// new verification would be refused alike.
		if policyErr = v.Policy.Check(p.Result); policyErr != nil && opts.Source != nil {
			p, reused = nil, false
		}
	}
	if !reused {
		var err error
		if p, err = VerifyCertificate(ctx, cert, opts, nonce); err != nil {
			return nil, err
		}
		policyErr = v.Policy.Check(p.Result)
	}
	if policyErr != nil {
		return nil, fmt.Errorf("policy: %w", policyErr)
	}
	p.PolicyChecked = true
	if v.Check != nil {
		if err := v.Check(p); err != nil {
			return nil, err
		}
	}
	if cache != nil && !reused {
		// Only accepted peers are remembered: a refused certificate is checked again every
		// time.
		if until, ok := verdictUntil(p, now); ok {
			cache.put(key, p, now, until, source)
		}
	}
	return p, nil
}
