// Package layerkey is the format in which verdictd, as an ocicrypt key provider, wraps the key of
// an encrypted image layer (ocicrypt's "optsdata": the layer's symmetric key and cipher options)
// with a key-encryption key the tenant keeps as a broker resource. The wrapped key is what
// `skopeo copy --encryption-key provider:verdictd:<repository>/<type>/<tag>` stores in the
// layer's org.opencontainers.image.enc.keys.provider.verdictd annotation. An enclave that the
// broker's policy admits fetches the KEK (the resource named in the annotation) after attesting
// and unwraps inside, so the layer's plaintext never exists outside the enclave.
//
// A wrapped key is the JSON object {"v":1,"kid":…,"alg":"A256GCM","iv":…,"ct":…} (read with
// package strictjson's rules); ct is AES-256-GCM of optsdata under the KEK with iv, and the
// additional data "inclavare-layerkey/v1\n" || kid, so that a wrapped key moved to another kid
// does not open. It must never return optsdata that did not authenticate.
package layerkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/internal/resourceid"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

const (
	// Version is the only version of the format.
	Version = 1
	// Alg is the only algorithm.
	Alg = "A256GCM"
	// KEKSize is the size of a key-encryption key: the broker's resource is exactly these bytes.
	KEKSize = 32
	// MaxWrapped bounds a wrapped key (ocicrypt's optsdata is a few hundred bytes).
	MaxWrapped = 64 << 10

	aadPrefix = "inclavare-layerkey/v1\n"
	ivSize    = 12
)

// Wrapped is a wrapped layer key.
type Wrapped struct {
	V   int    `json:"v"`
	KID string `json:"kid"`
	Alg string `json:"alg"`
	IV  string `json:"iv"`
	CT  string `json:"ct"`
}

// Wrap wraps optsData with kek for the broker resource kid and returns the JSON of the wrapped key.
func Wrap(kek []byte, kid string, optsData []byte) ([]byte, error) {
	if err := resourceid.Check(kid); err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(optsData) > MaxWrapped/2 {
		return nil, fmt.Errorf("layer key options of %d bytes: too large", len(optsData))
	}
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	ct := aead.Seal(nil, iv, optsData, []byte(aadPrefix+kid))
	return strictjson.Encode(Wrapped{V: Version, KID: kid, Alg: Alg,
		IV: base64.StdEncoding.EncodeToString(iv), CT: base64.StdEncoding.EncodeToString(ct)})
}

// Parse reads a wrapped key and checks its form; it decrypts nothing. The kid says which broker
// resource holds the KEK.
func Parse(data []byte) (*Wrapped, error) {
	if len(data) > MaxWrapped {
		return nil, fmt.Errorf("wrapped layer key of %d bytes: more than %d", len(data), MaxWrapped)
	}
	var w Wrapped
	if err := strictjson.Decode(data, &w); err != nil {
		return nil, fmt.Errorf("wrapped layer key: %w", err)
	}
	if w.V != Version {
		return nil, fmt.Errorf("wrapped layer key: version %d (only %d is defined)", w.V, Version)
	}
	if w.Alg != Alg {
		return nil, fmt.Errorf("wrapped layer key: alg %q (only %s is defined)", w.Alg, Alg)
	}
	if err := resourceid.Check(w.KID); err != nil {
		return nil, fmt.Errorf("wrapped layer key: kid: %w", err)
	}
	if iv, err := base64.StdEncoding.Strict().DecodeString(w.IV); err != nil || len(iv) != ivSize {
		return nil, fmt.Errorf("wrapped layer key: iv is not %d bytes of base64", ivSize)
	}
	if _, err := base64.StdEncoding.Strict().DecodeString(w.CT); err != nil {
		return nil, errors.New("wrapped layer key: ct is not base64")
	}
	return &w, nil
}

// Unwrap opens w with kek and returns ocicrypt's optsdata.
func (w *Wrapped) Unwrap(kek []byte) ([]byte, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	iv, _ := base64.StdEncoding.Strict().DecodeString(w.IV)
	ct, _ := base64.StdEncoding.Strict().DecodeString(w.CT)
	opts, err := aead.Open(nil, iv, ct, []byte(aadPrefix+w.KID))
	if err != nil {
		return nil, fmt.Errorf("wrapped layer key does not open with key %s: wrong key, or the wrapped key was changed", w.KID)
	}
	return opts, nil
}

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("key-encryption key is %d bytes, want %d (a raw AES-256 key)", len(kek), KEKSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
