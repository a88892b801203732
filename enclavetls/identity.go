package enclavetls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// EvidenceFunc produces evidence over 64 bytes of report data. It is how Enclave-TLS reaches a TEE:
// an attestation.Attester (see AttesterEvidence), the runelet's agent socket, a sim enclave key.
type EvidenceFunc func(ctx context.Context, reportData [attestation.ReportDataSize]byte) ([]byte, error)

// AttesterEvidence adapts an attestation.Attester.
func AttesterEvidence(a attestation.Attester) EvidenceFunc { return a.Evidence }

// DefaultValidity is how long a cached certificate is valid. A cached certificate is replaced when
// half of it has passed, so that a peer never sees evidence older than that.
const DefaultValidity = 12 * time.Hour

// clockSkew is how far before its creation a certificate is already valid: peers' clocks differ
// (rats-tls uses the same hour).
const clockSkew = time.Hour

// IdentityOptions tune an Identity.
type IdentityOptions struct {
	// Claims are extra custom claims to put in every certificate. The names "pubkey-hash", "nonce"
	// and "enclave-tls-challenge" are reserved.
	Claims map[string][]byte
	// Endorsements, when set, travel in the endorsement-manifest extension (SGX/TDX collateral).
	Endorsements *IntelEndorsements
	// Validity of a cached certificate; zero means DefaultValidity.
	Validity time.Duration
	// CommonName of the certificate subject; "" means "Enclave-TLS".
	CommonName string
}

// Identity is one side's attested TLS identity: a fresh ECDSA P-256 key, generated in this process
// and never written anywhere, and the evidence source that vouches for it. Certificates are
// self-signed and carry evidence whose report data binds the key (and, per connection, a peer's
// nonce).
type Identity struct {
	evidence     EvidenceFunc
	key          *ecdsa.PrivateKey
	spki         []byte
	shape        *certShape
	claims       map[string][]byte
	endorsements []byte
	validity     time.Duration
	commonName   string
	now          func() time.Time

	// mu guards the cached certificate; teeMu the TEE learnt from the first evidence (taken while
	// mu may be held).
	mu     sync.Mutex
	cached *tls.Certificate
	renew  time.Time
	teeMu  sync.Mutex
	tee    attestation.TEE
}

// NewIdentity creates an identity with a new key. It produces no evidence yet: the first
// certificate does, so that a TEE error surfaces where a context is available.
func NewIdentity(evidence EvidenceFunc, opts IdentityOptions) (*Identity, error) {
	if evidence == nil {
		return nil, errors.New("enclave-tls identity: no evidence source")
	}
	for name := range opts.Claims {
		switch name {
		case ClaimPublicKeyHash, ClaimNonce, ClaimChallenge:
			return nil, fmt.Errorf("enclave-tls identity: claim name %q is reserved", name)
		case "":
			return nil, errors.New("enclave-tls identity: empty claim name")
		}
	}
	if len(opts.Claims) > maxClaims-3 {
		return nil, fmt.Errorf("enclave-tls identity: %d claims, limit %d", len(opts.Claims), maxClaims-3)
	}
	if opts.Validity < 0 {
		return nil, errors.New("enclave-tls identity: negative validity")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("enclave-tls identity: generate key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("enclave-tls identity: %w", err)
	}
	id := &Identity{
		evidence:   evidence,
		key:        key,
		spki:       spki,
		claims:     opts.Claims,
		validity:   opts.Validity,
		commonName: opts.CommonName,
		now:        time.Now,
	}
	if id.validity == 0 {
		id.validity = DefaultValidity
	}
	if id.commonName == "" {
		id.commonName = "Enclave-TLS"
	}
	if opts.Endorsements != nil {
		if id.endorsements, err = opts.Endorsements.Marshal(); err != nil {
			return nil, fmt.Errorf("enclave-tls identity: %w", err)
		}
	}
	if id.shape, err = newCertShape(key, id.commonName, id.endorsements); err != nil {
		return nil, fmt.Errorf("enclave-tls identity: %w", err)
	}
	return id, nil
}

// PublicKey is the identity's public key (the one every certificate binds).
func (id *Identity) PublicKey() *ecdsa.PublicKey { return &id.key.PublicKey }

// Certificate returns the cached certificate, making a new one (new evidence) when there is none
// or half of its validity has passed.
func (id *Identity) Certificate(ctx context.Context) (*tls.Certificate, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.cached != nil && id.now().Before(id.renew) {
		return id.cached, nil
	}
	cert, err := id.newCertificate(ctx, nil, nil, true)
	if err != nil {
		return nil, err
	}
	id.cached = cert
	id.renew = id.now().Add(id.validity / 2)
	return cert, nil
}

// FreshCertificate makes a certificate for one connection: its evidence binds nonce (the peer's,
// as the "nonce" claim) and challenge (this side's, asking the peer to bind it in return), when
// given.
func (id *Identity) FreshCertificate(ctx context.Context, nonce, challenge []byte) (*tls.Certificate, error) {
	return id.newCertificate(ctx, nonce, challenge, true)
}

// newCertificate makes a certificate, with its parsed Leaf when leaf is set (a handshake does
// not need it: crypto/tls sends the DER and signs with the key).
func (id *Identity) newCertificate(ctx context.Context, nonce, challenge []byte, leaf bool) (*tls.Certificate, error) {
	spkiHash := sha256.Sum256(id.spki)
	others := make(map[string][]byte, len(id.claims)+2)
	for k, v := range id.claims {
		others[k] = v
	}
	if nonce != nil {
		others[ClaimNonce] = nonce
	}
	if challenge != nil {
		others[ClaimChallenge] = challenge
	}
	claims, err := MarshalClaims(&Claims{HashAlgorithm: HashSHA256, PublicKeyHash: spkiHash[:], Others: others})
	if err != nil {
		return nil, fmt.Errorf("enclave-tls certificate: %w", err)
	}
	te := TaggedEvidence{ClaimsBuffer: claims}
	if te.Evidence, err = id.evidence(ctx, te.ReportData()); err != nil {
		return nil, fmt.Errorf("enclave-tls certificate: produce evidence: %w", err)
	}
	if te.Tag, err = id.tagOf(te.Evidence); err != nil {
		return nil, fmt.Errorf("enclave-tls certificate: %w", err)
	}
	ext, err := te.Marshal()
	if err != nil {
		return nil, fmt.Errorf("enclave-tls certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("enclave-tls certificate: serial: %w", err)
	}
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	now := id.now()
	der, err := id.shape.certificate(id.key, serial, now.Add(-clockSkew), now.Add(id.validity), ext)
	if err != nil {
		return nil, fmt.Errorf("enclave-tls certificate: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.key}
	if leaf {
		if cert.Leaf, err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("enclave-tls certificate: %w", err)
		}
	}
	return cert, nil
}

// tagOf names the evidence format, recognised by content the first time and then fixed: an
// identity's TEE does not change, and a change would be a fault worth reporting.
func (id *Identity) tagOf(evidence []byte) (uint64, error) {
	v, err := attestation.Detect(evidence)
	if err != nil {
		return 0, fmt.Errorf("evidence source returned unrecognised evidence: %w", err)
	}
	tag, err := TagFor(v.TEE())
	if err != nil {
		return 0, err
	}
	id.teeMu.Lock()
	defer id.teeMu.Unlock()
	if id.tee == "" {
		id.tee = v.TEE()
	} else if id.tee != v.TEE() {
		return 0, fmt.Errorf("evidence source switched from %s to %s evidence", id.tee, v.TEE())
	}
	return tag, nil
}
