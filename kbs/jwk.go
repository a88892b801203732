package kbs

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Key-management algorithms of the TEE key (kbs-types' TeePubKey "alg").
const (
	AlgECDHES  = "ECDH-ES+A256KW" // EC keys: P-256 (guest-components' default), P-384, P-521
	AlgRSA     = "RSA-OAEP-256"   // RSA keys; RSA1_5 (trustee's deprecated fallback) is refused
	EncA256GCM = "A256GCM"
)

// RSA modulus bounds for a TEE key: below 2048 bits is weak, above 8192 only costs the broker.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// JWK is a TEE public key in kbs-types' TeePubKey form: {"kty": "EC", "crv", "alg", "x", "y"} or
// {"kty": "RSA", "alg", "n", "e"}. Its members are kept as sent, so that the runtime-data digest
// covers exactly what the client hashed.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	Alg string `json:"alg"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`

	ec  *ecdh.PublicKey
	rsa *rsa.PublicKey
}

var curves = map[string]struct {
	curve ecdh.Curve
	size  int
}{
	"P-256": {ecdh.P256(), 32},
	"P-384": {ecdh.P384(), 48},
	"P-521": {ecdh.P521(), 66},
}

// ParseJWK reads and checks a TEE public key: a known key type and algorithm, coordinates of the
// curve's exact size and on the curve, an RSA modulus of 2048 to 8192 bits. Unknown members are
// refused: trustee drops them before hashing, so they would never be bound.
func ParseJWK(raw json.RawMessage) (*JWK, error) {
	if len(raw) == 0 || isNull(raw) {
		return nil, errors.New("no key")
	}
	var k JWK
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("key is not a TEE public key JWK: %w", err)
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	return &k, nil
}

func (k *JWK) check() error {
	switch k.Kty {
	case "EC":
		if k.N != "" || k.E != "" {
			return errors.New(`EC key with RSA members "n"/"e"`)
		}
		if k.Alg != AlgECDHES {
			return fmt.Errorf("EC key algorithm %q is not supported (want %s)", k.Alg, AlgECDHES)
		}
		c, ok := curves[k.Crv]
		if !ok {
			return fmt.Errorf("EC curve %q is not supported (P-256, P-384, P-521)", k.Crv)
		}
		x, err1 := b64url(k.X)
		y, err2 := b64url(k.Y)
		if err1 != nil || err2 != nil || len(x) != c.size || len(y) != c.size {
			return fmt.Errorf("EC key coordinates must be base64url of %d bytes each", c.size)
		}
		pub, err := c.curve.NewPublicKey(append(append([]byte{4}, x...), y...))
		if err != nil {
			return fmt.Errorf("EC key is not a point on %s: %w", k.Crv, err)
		}
		k.ec = pub
	case "RSA":
		if k.Crv != "" || k.X != "" || k.Y != "" {
			return errors.New(`RSA key with EC members "crv"/"x"/"y"`)
		}
		if k.Alg != AlgRSA {
			return fmt.Errorf("RSA key algorithm %q is not supported (want %s; RSA1_5 is refused)", k.Alg, AlgRSA)
		}
		n, err1 := b64url(k.N)
		e, err2 := b64url(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return errors.New(`RSA key "n" and "e" must be base64url big-endian integers (e at most 4 bytes)`)
		}
		N := new(big.Int).SetBytes(n)
		E := new(big.Int).SetBytes(e)
		if bits := N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return fmt.Errorf("RSA key has %d bits, want %d to %d", bits, minRSABits, maxRSABits)
		}
		if E.Int64() < 3 || E.Bit(0) == 0 || N.Bit(0) == 0 {
			return errors.New("RSA key exponent or modulus is not a valid odd integer")
		}
		k.rsa = &rsa.PublicKey{N: N, E: int(E.Int64())}
	default:
		return fmt.Errorf("key type %q is not supported (EC or RSA)", k.Kty)
	}
	return nil
}

// members is the key as the runtime-data JSON holds it.
func (k *JWK) members() map[string]any {
	if k.Kty == "RSA" {
		return map[string]any{"kty": k.Kty, "alg": k.Alg, "n": k.N, "e": k.E}
	}
	return map[string]any{"kty": k.Kty, "crv": k.Crv, "alg": k.Alg, "x": k.X, "y": k.Y}
}

// Equal reports whether two keys are the same JWK, member for member.
func (k *JWK) Equal(o *JWK) bool {
	return k != nil && o != nil && k.Kty == o.Kty && k.Crv == o.Crv && k.Alg == o.Alg &&
		k.X == o.X && k.Y == o.Y && k.N == o.N && k.E == o.E
}

// Key is a TEE's ephemeral key pair: it never leaves the TEE; its public half goes into the
// Attestation message and the evidence binds it.
type Key struct {
	ec  *ecdh.PrivateKey
	rsa *rsa.PrivateKey
	pub *JWK
}

// NewECKey makes a P-256 key for ECDH-ES+A256KW (guest-components' default).
func NewECKey() (*Key, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate TEE key: %w", err)
	}
	raw := priv.PublicKey().Bytes() // 0x04 || X || Y
	pub := &JWK{Kty: "EC", Crv: "P-256", Alg: AlgECDHES,
		X: base64.RawURLEncoding.EncodeToString(raw[1:33]), Y: base64.RawURLEncoding.EncodeToString(raw[33:])}
	if err := pub.check(); err != nil {
		return nil, err
	}
	return &Key{ec: priv, pub: pub}, nil
}

// NewRSAKey makes an RSA key of bits for RSA-OAEP-256.
func NewRSAKey(bits int) (*Key, error) {
	if bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA TEE key: %d bits, want %d to %d", bits, minRSABits, maxRSABits)
	}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generate TEE key: %w", err)
	}
	pub := &JWK{Kty: "RSA", Alg: AlgRSA,
		N: base64.RawURLEncoding.EncodeToString(priv.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(priv.E)).Bytes())}
	if err := pub.check(); err != nil {
		return nil, err
	}
	return &Key{rsa: priv, pub: pub}, nil
}

// Public returns the key's JWK.
func (k *Key) Public() *JWK { return k.pub }

// b64url decodes unpadded base64url strictly (kbs-types' URL_SAFE_NO_PAD).
func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.Strict().DecodeString(s) }
