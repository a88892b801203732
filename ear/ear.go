// Package ear writes and reads attestation results as EAR (EAT Attestation Results, the
// Veraison/IETF RATS format, draft-fv-rats-ear): a JWT whose claims carry, per attested component
// ("submods"), the appraisal status (affirming, warning, contraindicated, none), the appraisal
// policy and the verified claims. verdictd issues one at every successful attestation and
// shelter writes one with --output ear.
//
// The layout follows trustee's attestation service where trustee has a convention, so that its
// consumers find things in the same place: one submod "cpu0" for the primary TEE, the verified
// claims under "ear.veraison.annotated-evidence" keyed by the TEE's name, the bound runtime data
// (the TEE key) under "runtime_data_claims", the signing key's JWK in the JWT header.
//
// This package signs and checks tokens; it never decides a status itself beyond mapping a
// verdict someone else reached (StatusOf), and Verify never trusts the key a token carries: the
// caller names the key.
package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Profile is the EAR profile name (eat_profile).
const Profile = "tag:github.com,2023:veraison/ear"

// Submod is the name of the one appraisal a token carries, as trustee names its CPU TEE's.
const Submod = "cpu0"

// Status is an appraisal's verdict (ear.status).
type Status string

// Statuses, in EAR's order from best to worst.
const (
	// Affirming: the evidence verified and the appraisal policy held.
	Affirming Status = "affirming"
	// Warning: verified, with reservations (not issued by this repository's appraisals).
	Warning Status = "warning"
	// Contraindicated: the evidence did not verify, or the policy failed.
	Contraindicated Status = "contraindicated"
	// None: no policy decided anything (the claims verified, nobody judged them).
	None Status = "none"
)

func (s Status) valid() bool {
	return s == Affirming || s == Warning || s == Contraindicated || s == None
}

// StatusOf maps a verdict to a status: contraindicated unless verified; none when no policy was
// checked; affirming when it held, contraindicated when it failed.
func StatusOf(verified, decided, satisfied bool) Status {
	switch {
	case !verified:
		return Contraindicated
	case !decided:
		return None
	case satisfied:
		return Affirming
	}
	return Contraindicated
}

// VerifierID names who appraised (ear.verifier-id).
type VerifierID struct {
	Developer string `json:"developer"`
	Build     string `json:"build"`
}

// Developer is this repository's ear.verifier-id developer.
const Developer = "https://github.com/inclavare-containers/inclavare-go"

// Appraisal is one submod's result.
type Appraisal struct {
	Status   Status `json:"ear.status"`
	PolicyID string `json:"ear.appraisal-policy-id,omitempty"`
	// AnnotatedEvidence holds the verified claims: {"<tee>": Claims(result), "report_data": hex,
	// "runtime_data_claims": {"nonce", "tee-pubkey"}} as trustee lays them out.
	AnnotatedEvidence map[string]any `json:"ear.veraison.annotated-evidence,omitempty"`
	// Violations lists the failed policy rules ("rule: message"), or why the evidence did not
	// verify: an extension of this repository, so that a contraindicated status says why.
	Violations []string `json:"inclavare.violations,omitempty"`
}

// Token is an EAR claims set.
type Token struct {
	Profile    string                `json:"eat_profile"`
	IssuedAt   int64                 `json:"iat"`
	Expiry     int64                 `json:"exp,omitempty"`
	Issuer     string                `json:"iss,omitempty"`
	VerifierID VerifierID            `json:"ear.verifier-id"`
	Nonce      string                `json:"eat_nonce,omitempty"`
	Submods    map[string]*Appraisal `json:"submods"`
}

// Claims are the verified facts of res as an EAR carries them (lower-case hex for bytes).
func Claims(res *attestation.Result) map[string]any {
	c := map[string]any{
		"tee":          string(res.TEE),
		"verified":     res.Verified,
		"tcb_status":   res.TCBStatus,
		"measurements": res.Measurements,
		"report_data":  hex.EncodeToString(res.ReportData),
		"debug":        res.Debug,
	}
	if len(res.Advisories) > 0 {
		c["advisories"] = res.Advisories
	}
	if res.ProductID != nil {
		c["product_id"] = *res.ProductID
	}
	if res.SVN != nil {
		c["svn"] = *res.SVN
	}
	if res.Signer != "" {
		c["signer"] = res.Signer
	}
	if len(res.Details) > 0 {
		c["details"] = res.Details
	}
	if res.Collateral != nil {
		c["collateral"] = res.Collateral
	}
	return c
}

// algorithmFor is the JWS algorithm of a signing key: ES256 for P-256, RS256 for RSA.
func algorithmFor(key crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("token key: ECDSA on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
		return jose.ES256, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("token key: RSA of %d bits; RS256 needs at least 2048", k.N.BitLen())
		}
		return jose.RS256, nil
	}
	return "", fmt.Errorf("token key: %T is neither ECDSA P-256 nor RSA", key)
}

// Sign returns the token as a compact JWS signed with key (ES256 or RS256), the key's public JWK
// in the header.
func (t *Token) Sign(key crypto.Signer) (string, error) {
	if t.Profile != Profile || len(t.Submods) == 0 {
		return "", errors.New("sign EAR: profile or submods missing")
	}
	for name, a := range t.Submods {
		if a == nil || !a.Status.valid() {
			return "", fmt.Errorf("sign EAR: submod %q has no valid status", name)
		}
	}
	alg, err := algorithmFor(key.Public())
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("sign EAR: %w", err)
	}
	s, err := jwt.Signed(signer).Claims(t).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign EAR: %w", err)
	}
	return s, nil
}

// Verify checks token's signature with key (never with a key the token carries), its profile,
// statuses and expiry at now, and returns its claims.
func Verify(token string, key crypto.PublicKey, now time.Time) (*Token, error) {
	alg, err := algorithmFor(key)
	if err != nil {
		return nil, err
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return nil, fmt.Errorf("EAR: %w", err)
	}
	var t Token
	if err := tok.Claims(key, &t); err != nil {
		return nil, fmt.Errorf("EAR: %w", err)
	}
	if t.Profile != Profile {
		return nil, fmt.Errorf("EAR: profile %q, want %q", t.Profile, Profile)
	}
	if t.IssuedAt == 0 || len(t.Submods) == 0 {
		return nil, errors.New("EAR: no iat or no submods")
	}
	for name, a := range t.Submods {
		if a == nil || !a.Status.valid() {
			return nil, fmt.Errorf("EAR: submod %q has no valid ear.status", name)
		}
	}
	if t.Expiry != 0 && now.Unix() >= t.Expiry {
		return nil, fmt.Errorf("EAR: expired at %s", time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return &t, nil
}

// GenerateSigningKey makes a fresh ECDSA P-256 token key.
func GenerateSigningKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// LoadSigningKey reads a PEM private key for ES256 (ECDSA P-256; PKCS #8 or SEC 1) or RS256 (RSA
// of at least 2048 bits; PKCS #8 or PKCS #1).
func LoadSigningKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	for rest := data; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, fmt.Errorf("token key %s: no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", path)
		}
		var key any
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("token key %s: %w", path, err)
		}
		var s crypto.Signer
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			s = k
		case *rsa.PrivateKey:
			s = k
		default:
			return nil, fmt.Errorf("token key %s: %T is neither ECDSA P-256 nor RSA", path, key)
		}
		if _, err := algorithmFor(s.Public()); err != nil {
			return nil, fmt.Errorf("token key %s: %w", path, err)
		}
		return s, nil
	}
}

// PublicKeyPEM is key's public half as a PEM PUBLIC KEY block, for relying parties.
func PublicKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
