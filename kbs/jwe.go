package kbs

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	josecipher "github.com/go-jose/go-jose/v4/cipher"
)

// A resource travels as an RFC 7516 JWE in flattened JSON serialization, the way trustee builds it
// (kbs/src/jwe): {"protected", "encrypted_key", "iv", "ciphertext", "tag"}, base64url without
// padding, content encrypted with AES-256-GCM under a fresh key, the additional authenticated data
// being the ASCII of the "protected" member. The content key is wrapped for the TEE key with
// ECDH-ES+A256KW (Concat KDF, no PartyU/PartyV info) or RSA-OAEP-256.
//
// guest-components does not use the "protected" string it receives as the AAD: it decodes the
// header and serializes it again (serde: "alg", "enc", then the other members in the order it
// read them, or sorted, depending on serde_json's features). So Seal writes the header in the one
// form both readings reproduce byte for byte: "alg", "enc", "epk", and the epk's members sorted.

// Response is the JWE body of a resource response.
type Response struct {
	Protected    string `json:"protected"`
	EncryptedKey string `json:"encrypted_key"`
	IV           string `json:"iv"`
	Ciphertext   string `json:"ciphertext"`
	Tag          string `json:"tag"`
}

const (
	cekSize    = 32
	gcmIVSize  = 12
	gcmTagSize = 16
	// MaxResponseSize bounds a resource response a client reads.
	MaxResponseSize = 32 << 20
)

// Seal encrypts plaintext to the TEE key pub and returns the JWE as JSON.
func Seal(pub *JWK, plaintext []byte) ([]byte, error) {
	if pub == nil || (pub.ec == nil && pub.rsa == nil) {
		return nil, errors.New("seal: the TEE key was not checked (use ParseJWK)")
	}
	cek := make([]byte, cekSize)
	if _, err := rand.Read(cek); err != nil {
		return nil, err
	}
	var header []byte
	var encKey []byte
	switch {
	case pub.ec != nil:
		eph, err := pub.ec.Curve().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("seal: ephemeral key: %w", err)
		}
		z, err := eph.ECDH(pub.ec)
		if err != nil {
			return nil, fmt.Errorf("seal: ECDH: %w", err)
		}
		if encKey, err = wrapKey(kekFrom(z), cek); err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		raw := eph.PublicKey().Bytes()
		size := (len(raw) - 1) / 2
		header = fmt.Appendf(nil, `{"alg":%q,"enc":%q,"epk":{"crv":%q,"kty":"EC","x":%q,"y":%q}}`, AlgECDHES, EncA256GCM, pub.Crv,
			base64.RawURLEncoding.EncodeToString(raw[1:1+size]), base64.RawURLEncoding.EncodeToString(raw[1+size:]))
	default:
		var err error
		if encKey, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.rsa, cek, nil); err != nil {
			return nil, fmt.Errorf("seal: RSA-OAEP-256: %w", err)
		}
		header = fmt.Appendf(nil, `{"alg":%q,"enc":%q}`, AlgRSA, EncA256GCM)
	}
	protected := base64.RawURLEncoding.EncodeToString(header)
	gcm, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, gcmIVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	sealed := gcm.Seal(nil, iv, plaintext, []byte(protected))
	ct, tag := sealed[:len(sealed)-gcmTagSize], sealed[len(sealed)-gcmTagSize:]
	return json.Marshal(Response{
		Protected:    protected,
		EncryptedKey: base64.RawURLEncoding.EncodeToString(encKey),
		IV:           base64.RawURLEncoding.EncodeToString(iv),
		Ciphertext:   base64.RawURLEncoding.EncodeToString(ct),
		Tag:          base64.RawURLEncoding.EncodeToString(tag),
	})
}

// Open checks and decrypts a JWE sealed to k. Anything but the layout above is refused: other
// members ("aad", "header", "recipients"), other header parameters ("zip", "crit", …), an
// algorithm other than k's, another curve. A changed byte anywhere fails the GCM tag.
func (k *Key) Open(body []byte) ([]byte, error) {
	var r Response
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("JWE: not a flattened JWE of the KBS protocol: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("JWE: data after the JSON object")
	}
	header, err1 := b64url(r.Protected)
	encKey, err2 := b64url(r.EncryptedKey)
	iv, err3 := b64url(r.IV)
	ct, err4 := b64url(r.Ciphertext)
	tag, err5 := b64url(r.Tag)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return nil, fmt.Errorf("JWE: a member is not unpadded base64url: %w", err)
	}
	if len(iv) != gcmIVSize || len(tag) != gcmTagSize {
		return nil, fmt.Errorf("JWE: iv must be %d bytes and tag %d bytes", gcmIVSize, gcmTagSize)
	}
	var h struct {
		Alg string          `json:"alg"`
		Enc string          `json:"enc"`
		Epk json.RawMessage `json:"epk"`
	}
	hdec := json.NewDecoder(bytes.NewReader(header))
	hdec.DisallowUnknownFields()
	if err := hdec.Decode(&h); err != nil {
		return nil, fmt.Errorf("JWE: protected header: %w (only alg, enc and epk are understood)", err)
	}
	if h.Enc != EncA256GCM {
		return nil, fmt.Errorf("JWE: content encryption %q, want %s", h.Enc, EncA256GCM)
	}
	if h.Alg != k.pub.Alg {
		return nil, fmt.Errorf("JWE: key management %q, but the TEE key is for %s", h.Alg, k.pub.Alg)
	}
	var cek []byte
	switch {
	case k.ec != nil:
		epk, err := parseEPK(h.Epk, k.pub.Crv)
		if err != nil {
			return nil, fmt.Errorf("JWE: %w", err)
		}
		z, err := k.ec.ECDH(epk)
		if err != nil {
			return nil, fmt.Errorf("JWE: ECDH: %w", err)
		}
		if cek, err = unwrapKey(kekFrom(z), encKey); err != nil {
			return nil, fmt.Errorf("JWE: unwrap content key: %w", err)
		}
	default:
		if len(h.Epk) != 0 {
			return nil, errors.New(`JWE: "epk" in an RSA-OAEP-256 header`)
		}
		var err error
		if cek, err = rsa.DecryptOAEP(sha256.New(), nil, k.rsa, encKey, nil); err != nil {
			return nil, fmt.Errorf("JWE: RSA-OAEP-256: %w", err)
		}
	}
	if len(cek) != cekSize {
		return nil, fmt.Errorf("JWE: content key is %d bytes, want %d", len(cek), cekSize)
	}
	gcm, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, iv, append(ct, tag...), []byte(r.Protected))
	if err != nil {
		return nil, fmt.Errorf("JWE: decrypt: %w (the response was altered or not sealed to this key)", err)
	}
	return pt, nil
}

func parseEPK(raw json.RawMessage, crv string) (*ecdh.PublicKey, error) {
	var e struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if len(raw) == 0 || dec.Decode(&e) != nil {
		return nil, errors.New(`"epk" must be {"crv", "kty", "x", "y"}`)
	}
	if e.Kty != "EC" || e.Crv != crv {
		return nil, fmt.Errorf("epk is %s %s, the TEE key is EC %s", e.Kty, e.Crv, crv)
	}
	c := curves[crv]
	x, err1 := b64url(e.X)
	y, err2 := b64url(e.Y)
	if err1 != nil || err2 != nil || len(x) != c.size || len(y) != c.size {
		return nil, fmt.Errorf("epk coordinates must be base64url of %d bytes", c.size)
	}
	pub, err := c.curve.NewPublicKey(append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("epk is not on %s: %w", crv, err)
	}
	return pub, nil
}

// kekFrom derives the A256KW key-encryption key from the ECDH shared secret z with the Concat
// KDF of RFC 7518 §4.6.2: AlgorithmID "ECDH-ES+A256KW", empty PartyUInfo and PartyVInfo.
func kekFrom(z []byte) []byte {
	lp := func(b []byte) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(b))) }
	alg := []byte(AlgECDHES)
	kdf := josecipher.NewConcatKDF(crypto.SHA256, z, append(lp(alg), alg...), lp(nil), lp(nil),
		binary.BigEndian.AppendUint32(nil, cekSize*8), nil)
	kek := make([]byte, cekSize)
	_, _ = io.ReadFull(kdf, kek) // the KDF reader never fails
	return kek
}

func wrapKey(kek, cek []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return josecipher.KeyWrap(block, cek)
}

func unwrapKey(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) != cekSize+8 {
		return nil, fmt.Errorf("wrapped key is %d bytes, want %d", len(wrapped), cekSize+8)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return josecipher.KeyUnwrap(block, wrapped)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
