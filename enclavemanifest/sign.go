package enclavemanifest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest/internal/boundedread"
)

// maxKeyFileSize bounds a private key file.
const maxKeyFileSize = 64 << 10

// Identity describes a signer's key.
type Identity struct {
	KeyID     string
	Algorithm string
	PublicKey crypto.PublicKey
	// Ephemeral: the key was generated for this process and nobody can trust it by id.
	Ephemeral bool
}

// check makes sure the id and algorithm are those of the key, so a signer (a remote service
// especially) cannot announce one key and sign with another unnoticed.
func (id Identity) check() error {
	if id.PublicKey == nil {
		return fmt.Errorf("signer identity has no public key")
	}
	alg, err := AlgorithmFor(id.PublicKey)
	if err != nil {
		return fmt.Errorf("signer key: %w", err)
	}
	if alg != id.Algorithm {
		return fmt.Errorf("signer announces algorithm %q for a key of algorithm %q", id.Algorithm, alg)
	}
	kid, err := KeyID(id.PublicKey)
	if err != nil {
		return err
	}
	if kid != id.KeyID {
		return fmt.Errorf("signer announces key id %s for a key whose id is %s", id.KeyID, kid)
	}
	return nil
}

// Signer signs manifest payloads: a local key (KeySigner) or a signing service (signservice.Client).
type Signer interface {
	// Identity describes the key Sign signs with.
	Identity(ctx context.Context) (Identity, error)
	// Sign returns the signature over SignatureInput(payload), in the encoding of the key's
	// algorithm (see the Alg constants).
	Sign(ctx context.Context, payload []byte) ([]byte, error)
}

// KeySigner signs with a private key held in this process.
type KeySigner struct {
	key crypto.Signer
	id  Identity
}

// NewKeySigner signs with key (ECDSA P-256, Ed25519 or RSA 2048–8192 bits).
func NewKeySigner(key crypto.Signer) (*KeySigner, error) {
	return newKeySigner(key, false)
}

func newKeySigner(key crypto.Signer, ephemeral bool) (*KeySigner, error) {
	pub := key.Public()
	alg, err := AlgorithmFor(pub)
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &KeySigner{key: key, id: Identity{KeyID: kid, Algorithm: alg, PublicKey: pub, Ephemeral: ephemeral}}, nil
}

// LoadKeySigner reads a PEM private key file (see ParsePrivateKeyPEM for the forms accepted).
func LoadKeySigner(path string) (*KeySigner, error) {
	data, err := boundedread.File(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	s, err := NewKeySigner(key)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// NewEphemeralSigner generates a throwaway ECDSA P-256 key. Manifests it signs say
// `"ephemeral": true` and carry the public key, and Verify refuses them unless the verifier
// explicitly allows ephemeral keys: they prove integrity, not origin. Use it only when the
// caller has deliberately chosen to run without a configured signer.
func NewEphemeralSigner() (*KeySigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ephemeral key: %w", err)
	}
	return newKeySigner(key, true)
}

// Identity implements Signer.
func (s *KeySigner) Identity(context.Context) (Identity, error) { return s.id, nil }

// Sign implements Signer.
func (s *KeySigner) Sign(_ context.Context, payload []byte) ([]byte, error) {
	return signPayload(s.key, s.id.Algorithm, payload)
}

// Sign completes m with its version, signer and (when zero) creation time, checks it, signs
// the payload with s and returns the manifest file's bytes. The signature is verified with
// the signer's public key before it is returned, so a faulty signer or service is caught
// here, at create, not later by rune.
func Sign(ctx context.Context, m Manifest, s Signer) ([]byte, error) {
	id, err := s.Identity(ctx)
	if err != nil {
		return nil, fmt.Errorf("sign enclave manifest: %w", err)
	}
	if err := id.check(); err != nil {
		return nil, fmt.Errorf("sign enclave manifest: %w", err)
	}
	m.Version = Version
	m.Signer = SignerInfo{KeyID: id.KeyID, Algorithm: id.Algorithm, Ephemeral: id.Ephemeral}
	if id.Ephemeral {
		der, err := x509.MarshalPKIXPublicKey(id.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("sign enclave manifest: %w", err)
		}
		m.Signer.PublicKey = strictBase64.EncodeToString(der)
	}
	if m.Created.IsZero() {
		m.Created = time.Now().Truncate(time.Second)
	}
	m.Created = m.Created.UTC()
	if m.Image != nil {
		img := *m.Image
		m.Image = &img
	}
	m.normalize()
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("sign enclave manifest: %w", err)
	}
	payload, err := marshalPayload(&m)
	if err != nil {
		return nil, fmt.Errorf("sign enclave manifest: %w", err)
	}
	sig, err := s.Sign(ctx, payload)
	if err != nil {
		return nil, fmt.Errorf("sign enclave manifest: %w", err)
	}
	if err := VerifySignature(id.Algorithm, id.PublicKey, payload, sig); err != nil {
		return nil, fmt.Errorf("sign enclave manifest: the signer returned a signature that does not verify with key %s: %w", id.KeyID, err)
	}
	out, err := encodeEnvelope(payload, sig)
	if err != nil {
		return nil, fmt.Errorf("sign enclave manifest: %w", err)
	}
	// What this function writes, this package must read: a mismatch is a bug, caught here.
	if _, err := ParseUnverified(out); err != nil {
		return nil, fmt.Errorf("sign enclave manifest: produced an unreadable manifest: %w", err)
	}
	return out, nil
}
