package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
)

// ErrSignature is wrapped by every failed signature check.
var ErrSignature = errors.New("signature does not verify")

// ECDSAP256 checks a raw r||s ECDSA P-256 signature over SHA-256(msg).
func ECDSAP256(pub *ecdsa.PublicKey, msg, rs []byte) error {
	if pub == nil || pub.Curve != elliptic.P256() {
		return errors.New("public key is not ECDSA P-256")
	}
	if len(rs) != 64 {
		return fmt.Errorf("signature is %d bytes, want 64 (r||s)", len(rs))
	}
	r := new(big.Int).SetBytes(rs[:32])
	s := new(big.Int).SetBytes(rs[32:])
	digest := sha256.Sum256(msg)
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return ErrSignature
	}
	return nil
}

// AttestationKey decodes the quote's raw attestation key (x||y) as a P-256 public key.
func AttestationKey(xy []byte) (*ecdsa.PublicKey, error) {
	if len(xy) != 64 {
		return nil, fmt.Errorf("attestation key is %d bytes, want 64", len(xy))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{0x04}, xy...))
	if err != nil {
		return nil, fmt.Errorf("attestation key: %w", err)
	}
	return pub, nil
}

// certP256Key returns a certificate's public key if it is ECDSA P-256.
func certP256Key(cert *x509.Certificate) (*ecdsa.PublicKey, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("certificate %q has no ECDSA P-256 key", cert.Subject.CommonName)
	}
	return pub, nil
}
