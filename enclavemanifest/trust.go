package enclavemanifest

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest/internal/boundedread"
)

// maxTrustFileSize bounds a trust file: a few hundred keys or certificates.
const maxTrustFileSize = 4 << 20

// Trust is the set of keys whose manifests a verifier accepts, found by key id. A key can be
// trusted on its own (a PEM PUBLIC KEY: no time limit) or through a certificate for it (a PEM
// CERTIFICATE: only within the certificate's validity period). No chain is built: a
// certificate here is itself the anchor.
type Trust struct {
	// AllowEphemeral accepts manifests signed with an ephemeral key. Such a signature proves
	// only that the manifest was not corrupted, not who made it: for development only.
	AllowEphemeral bool
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time

	keys map[string]*trustedKey
}

type trustedKey struct {
	pub crypto.PublicKey
	alg string
	// bare: trusted as a key, without time limit; otherwise through certs.
	bare  bool
	certs []*x509.Certificate
}

// NewTrust returns an empty trust set: it verifies nothing until keys are added.
func NewTrust() *Trust { return &Trust{keys: map[string]*trustedKey{}} }

// AddPublicKey trusts pub and returns its key id.
func (t *Trust) AddPublicKey(pub crypto.PublicKey) (string, error) {
	k, id, err := t.entry(pub)
	if err != nil {
		return "", err
	}
	k.bare = true
	return id, nil
}

// AddCertificate trusts the key of cert while cert is valid, and returns its key id.
func (t *Trust) AddCertificate(cert *x509.Certificate) (string, error) {
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return "", fmt.Errorf("certificate %q: its key usage does not include digital signatures", cert.Subject)
	}
	k, id, err := t.entry(cert.PublicKey)
	if err != nil {
		return "", fmt.Errorf("certificate %q: %w", cert.Subject, err)
	}
	k.certs = append(k.certs, cert)
	return id, nil
}

func (t *Trust) entry(pub crypto.PublicKey) (*trustedKey, string, error) {
	alg, err := AlgorithmFor(pub)
	if err != nil {
		return nil, "", err
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, "", err
	}
	if t.keys == nil {
		t.keys = map[string]*trustedKey{}
	}
	k := t.keys[id]
	if k == nil {
		k = &trustedKey{pub: pub, alg: alg}
		t.keys[id] = k
	}
	return k, id, nil
}

// AddPEM trusts every PUBLIC KEY and CERTIFICATE block of data. Any other block, text that is
// not PEM, or no block at all is an error, so that a wrong file never quietly trusts nothing.
func (t *Trust) AddPEM(data []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		n++
		switch block.Type {
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("PEM block %d (PUBLIC KEY): %w", n, err)
			}
			if _, err := t.AddPublicKey(pub); err != nil {
				return fmt.Errorf("PEM block %d (PUBLIC KEY): %w", n, err)
			}
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("PEM block %d (CERTIFICATE): %w", n, err)
			}
			if _, err := t.AddCertificate(cert); err != nil {
				return fmt.Errorf("PEM block %d: %w", n, err)
			}
		default:
			return fmt.Errorf("PEM block %d is %q (want PUBLIC KEY or CERTIFICATE)", n, block.Type)
		}
	}
	if n == 0 {
		return errors.New("no PEM block (want PUBLIC KEY or CERTIFICATE blocks)")
	}
	if strings.TrimSpace(string(data)) != "" {
		return fmt.Errorf("data after PEM block %d is not PEM", n)
	}
	return nil
}

// LoadTrust reads a PEM file of trusted public keys and certificates.
func LoadTrust(path string) (*Trust, error) {
	data, err := boundedread.File(path, maxTrustFileSize)
	if err != nil {
		return nil, fmt.Errorf("enclave manifest trust: %w", err)
	}
	t := NewTrust()
	if err := t.AddPEM(data); err != nil {
		return nil, fmt.Errorf("enclave manifest trust %s: %w", path, err)
	}
	return t, nil
}

// KeyIDs lists the trusted key ids, sorted.
func (t *Trust) KeyIDs() []string {
	ids := make([]string, 0, len(t.keys))
	for id := range t.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// lookup returns the trusted key for id, checking certificate validity.
func (t *Trust) lookup(id string) (*trustedKey, error) {
	k := t.keys[id]
	if k == nil {
		known := "none"
		if len(t.keys) > 0 {
			known = strings.Join(t.KeyIDs(), ", ")
		}
		return nil, fmt.Errorf("%w: key id %s is not trusted (trusted: %s)", ErrUntrustedKey, id, known)
	}
	if k.bare {
		return k, nil
	}
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	for _, c := range k.certs {
		if !now.Before(c.NotBefore) && !now.After(c.NotAfter) {
			return k, nil
		}
	}
	c := k.certs[0]
	return nil, fmt.Errorf("%w: key id %s is trusted through certificate %q valid from %s to %s, not at %s",
		ErrUntrustedKey, id, c.Subject, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}

// ephemeralKey decodes the public key an ephemeral signer put into the manifest and checks
// that it is the key the key id names, of the declared algorithm.
func (s *SignerInfo) ephemeralKey() (crypto.PublicKey, error) {
	der, err := strictBase64.DecodeString(s.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("signer.public_key is not base64: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("signer.public_key: %v", err)
	}
	alg, err := AlgorithmFor(pub)
	if err != nil {
		return nil, fmt.Errorf("signer.public_key: %w", err)
	}
	if alg != s.Algorithm {
		return nil, fmt.Errorf("signer.public_key is a key for %s, signer.algorithm says %s", alg, s.Algorithm)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	if id != s.KeyID {
		return nil, fmt.Errorf("signer.public_key has key id %s, signer.key_id says %s", id, s.KeyID)
	}
	return pub, nil
}

// Verify checks a manifest file and returns its payload: the envelope and payload are
// well-formed and of a known version, the signer's key is trusted (or ephemeral and allowed),
// the algorithm is the trusted key's, and the signature verifies over the payload bytes. Any
// failure is an error; nothing is returned that did not pass every check. Comparing the
// result with the container is the caller's next step (Matches).
func Verify(data []byte, trust *Trust) (*Manifest, error) {
	if trust == nil {
		return nil, errors.New("verify enclave manifest: no trust set given")
	}
	payload, sig, err := decodeEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("verify enclave manifest: %w", err)
	}
	m, err := ParsePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("verify enclave manifest: %w", err)
	}
	var pub crypto.PublicKey
	if m.Signer.Ephemeral {
		if !trust.AllowEphemeral {
			return nil, fmt.Errorf("verify enclave manifest: %w (key id %s) and ephemeral keys are not allowed: configure a signing key or service", ErrEphemeralKey, m.Signer.KeyID)
		}
		if pub, err = m.Signer.ephemeralKey(); err != nil {
			return nil, fmt.Errorf("verify enclave manifest: %w: %w", ErrMalformed, err)
		}
	} else {
		k, err := trust.lookup(m.Signer.KeyID)
		if err != nil {
			return nil, fmt.Errorf("verify enclave manifest: %w", err)
		}
		pub = k.pub
	}
	if err := VerifySignature(m.Signer.Algorithm, pub, payload, sig); err != nil {
		return nil, fmt.Errorf("verify enclave manifest (key id %s): %w", m.Signer.KeyID, err)
	}
	return m, nil
}
