package enclavemanifest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// Signature algorithms. The algorithm is bound to the key type: a verifier never lets the
// manifest pick an algorithm its trusted key was not made for.
const (
	// AlgECDSAP256SHA256 is ECDSA on P-256 over SHA-256(SignatureInput); the signature is r||s,
	// each 32 bytes big-endian (64 bytes, no DER).
	AlgECDSAP256SHA256 = "ecdsa-p256-sha256"
	// AlgEd25519 is pure Ed25519 (RFC 8032) over SignatureInput itself; 64 bytes.
	AlgEd25519 = "ed25519"
	// AlgRSAPSSSHA256 is RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt over
	// SHA-256(SignatureInput); keys of 2048 to 8192 bits. It exists because the shim's
	// configuration accepts RSA keys.
	AlgRSAPSSSHA256 = "rsa-pss-sha256"
)

var algorithms = []string{AlgECDSAP256SHA256, AlgEd25519, AlgRSAPSSSHA256}

func knownAlgorithm(alg string) bool {
	for _, a := range algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

const (
	keyIDPrefix = "sha256:"
	minRSABits  = 2048
	maxRSABits  = 8192
)

// signatureContext opens every signature input, so that a manifest signature can never be
// taken for a signature over anything else the same key signs. JSON text cannot contain a
// NUL byte, so the boundary between context and payload is unambiguous.
const signatureContext = "inclavare-enclave-manifest\x00"

// SignatureInput is the exact byte string a manifest signature covers: the context string
// "inclavare-enclave-manifest" and a NUL byte, followed by the payload bytes as stored.
func SignatureInput(payload []byte) []byte {
	return append([]byte(signatureContext), payload...)
}

// PayloadDigest is "sha256:" and the hex SHA-256 of SignatureInput(payload): what ECDSA and
// RSA-PSS sign, and what a client sends a signing service as a check on the payload.
func PayloadDigest(payload []byte) string {
	sum := sha256.Sum256(SignatureInput(payload))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// KeyID names a public key: "sha256:" and the hex SHA-256 of its DER SubjectPublicKeyInfo.
// A key and any certificate for it have the same id.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return keyIDPrefix + hex.EncodeToString(sum[:]), nil
}

// AlgorithmFor returns the signature algorithm used with pub, or an error for a key type,
// curve or size this package does not sign or verify with.
func AlgorithmFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ECDSA key on %s (only P-256 is supported)", ErrUnsupportedAlgorithm, k.Curve.Params().Name)
		}
		return AlgECDSAP256SHA256, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("%w: Ed25519 key of %d bytes", ErrUnsupportedAlgorithm, len(k))
		}
		return AlgEd25519, nil
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return "", fmt.Errorf("%w: RSA key of %d bits (want %d to %d)", ErrUnsupportedAlgorithm, n, minRSABits, maxRSABits)
		}
		return AlgRSAPSSSHA256, nil
	default:
		return "", fmt.Errorf("%w: key type %T (want ECDSA P-256, Ed25519 or RSA)", ErrUnsupportedAlgorithm, pub)
	}
}

var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// verifySignature checks sig over SignatureInput(payload) with pub, which must be a key of
// algorithm alg.
func VerifySignature(alg string, pub crypto.PublicKey, payload, sig []byte) error {
	keyAlg, err := AlgorithmFor(pub)
	if err != nil {
		return err
	}
	if keyAlg != alg {
		return fmt.Errorf("%w: manifest says %s, the signing key is for %s", ErrUnsupportedAlgorithm, alg, keyAlg)
	}
	input := SignatureInput(payload)
	digest := sha256.Sum256(input)
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if len(sig) == 64 {
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			ok = ecdsa.Verify(k, digest[:], r, s)
		}
	case ed25519.PublicKey:
		ok = len(sig) == ed25519.SignatureSize && ed25519.Verify(k, input, sig)
	case *rsa.PublicKey:
		ok = len(sig) == k.Size() && rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, pssOptions) == nil
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// signPayload signs SignatureInput(payload) with priv in the encoding verifySignature reads.
func signPayload(priv crypto.Signer, alg string, payload []byte) ([]byte, error) {
	input := SignatureInput(payload)
	digest := sha256.Sum256(input)
	switch alg {
	case AlgECDSAP256SHA256:
		der, err := priv.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("ECDSA sign: %w", err)
		}
		return ecdsaDERToRaw(der)
	case AlgEd25519:
		sig, err := priv.Sign(rand.Reader, input, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("Ed25519 sign: %w", err)
		}
		return sig, nil
	case AlgRSAPSSSHA256:
		sig, err := priv.Sign(rand.Reader, digest[:], pssOptions)
		if err != nil {
			return nil, fmt.Errorf("RSA-PSS sign: %w", err)
		}
		return sig, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, alg)
	}
}

// ecdsaDERToRaw turns an ASN.1 ECDSA-Sig-Value into fixed-size r||s.
func ecdsaDERToRaw(der []byte) ([]byte, error) {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("ECDSA signer returned a malformed signature")
	}
	if v.R.Sign() <= 0 || v.S.Sign() <= 0 || v.R.BitLen() > 256 || v.S.BitLen() > 256 {
		return nil, errors.New("ECDSA signer returned a signature out of range")
	}
	out := make([]byte, 64)
	v.R.FillBytes(out[:32])
	v.S.FillBytes(out[32:])
	return out, nil
}

// ParsePrivateKeyPEM reads exactly one PEM private key: PKCS#8 ("PRIVATE KEY": ECDSA P-256,
// Ed25519 or RSA), SEC 1 ("EC PRIVATE KEY", P-256) or PKCS#1 ("RSA PRIVATE KEY"). Encrypted
// keys are refused: decrypt them into a file readable by root only.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block, or data after the key")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the key is encrypted; a signing key file holds an unencrypted key readable by root only")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: private key of type %T", ErrUnsupportedAlgorithm, key)
	}
	if _, err := AlgorithmFor(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}
