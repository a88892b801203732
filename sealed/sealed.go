// Package sealed is the format of a sealed workload: a file (a wasm module, a native executable)
// encrypted by its tenant with a key that only the tenant's key broker holds, so that the image,
// the registry and the node see only ciphertext. The enclave runtime, after attesting to the
// broker, fetches the key named in the header and opens the file in memory (docs/sealed.md).
//
// A file sealed at conversion by a carrier on the node (envelope encryption) carries its own
// content key, wrapped (package layerkey) by the broker's key-encryption key: the header's
// wrapped_key. Then key_id names that KEK, and the enclave fetches the KEK, unwraps the content
// key and opens the file; the node never holds the KEK.
//
// A sealed file is
//
//	magic "inclavare-sealed/v1\n" | header length (4 bytes, big-endian) | header | ciphertext
//
// where the header is a JSON object (Header; read with package strictjson's rules) and the
// ciphertext is AES-256-GCM over the plaintext with the header's nonce and, as additional data,
// everything before the ciphertext: the key id, the plaintext's digest and size are
// authenticated, and a header moved onto another file's ciphertext fails to open. Open also
// checks the plaintext's SHA-256 and size against the header.
//
// It must never return a plaintext that did not authenticate, nor accept a header with more
// than one reading.
package sealed

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/internal/resourceid"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
	"github.com/inclavare-containers/inclavare-go/layerkey"
)

const (
	// Magic starts every sealed file.
	Magic = "inclavare-sealed/v1\n"
	// Alg is the only algorithm of format v1.
	Alg = "A256GCM"
	// KeySize is the size of a sealing key: the broker's resource is exactly these bytes.
	KeySize = 32
	// MaxHeader bounds the header; a key id is at most 767 bytes.
	MaxHeader = 4096
	// MaxPlaintext bounds what is sealed: the file is opened in memory.
	MaxPlaintext = 1 << 30

	nonceSize = 12
	tagSize   = 16
)

// ErrNotSealed is returned by Parse for data that does not start with Magic.
var ErrNotSealed = errors.New("not a sealed file (no " + `"inclavare-sealed/v1"` + " magic)")

// Header describes a sealed file.
type Header struct {
	// KeyID is the key broker's resource holding the key, "<repository>/<type>/<tag>".
	KeyID string `json:"key_id"`
	// Alg is "A256GCM".
	Alg string `json:"alg"`
	// PlaintextSHA256 is the hex SHA-256 of the plaintext.
	PlaintextSHA256 string `json:"plaintext_sha256"`
	// PlaintextSize is the plaintext's length in bytes.
	PlaintextSize int64 `json:"plaintext_size"`
	// Nonce is the GCM nonce, 12 bytes, base64 (standard, padded).
	Nonce string `json:"nonce"`
	// WrappedKey, when not empty, is the file's content key wrapped by the key-encryption key
	// KeyID (the JSON of package layerkey, base64 standard padded): the file was sealed by a
	// carrier at conversion (SealWrapped). Empty: KeyID is the content key itself (Seal).
	WrappedKey string `json:"wrapped_key,omitempty"`
}

// headerJSON is Header as decoded: a pointer tells an absent wrapped_key from an empty one,
// which is refused (one reading).
type headerJSON struct {
	KeyID           string  `json:"key_id"`
	Alg             string  `json:"alg"`
	PlaintextSHA256 string  `json:"plaintext_sha256"`
	PlaintextSize   int64   `json:"plaintext_size"`
	Nonce           string  `json:"nonce"`
	WrappedKey      *string `json:"wrapped_key"`
}

// Wrapped reports whether the file carries its own content key, wrapped by KeyID's KEK.
func (h *Header) Wrapped() bool { return h.WrappedKey != "" }

// PlaintextSum is the plaintext's SHA-256 as the header states it (a parsed header's is valid).
func (h *Header) PlaintextSum() [sha256.Size]byte {
	var sum [sha256.Size]byte
	hex.Decode(sum[:], []byte(h.PlaintextSHA256))
	return sum
}

// File is a parsed, not yet opened, sealed file.
type File struct {
	Header
	wrapped    *layerkey.Wrapped
	nonce      []byte
	aad        []byte
	ciphertext []byte
}

// IsSealed reports whether data starts with the sealed-file magic (it may still be malformed).
func IsSealed(data []byte) bool { return bytes.HasPrefix(data, []byte(Magic)) }

// Seal encrypts plaintext with key (KeySize bytes) for the broker resource keyID.
func Seal(plaintext, key []byte, keyID string) ([]byte, error) {
	if err := resourceid.Check(keyID); err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	return seal(plaintext, key, Header{KeyID: keyID})
}

// SealWrapped encrypts plaintext with the content key dek (KeySize bytes, fresh for this file)
// and records wrapped, the JSON of dek wrapped (package layerkey) by the key-encryption key
// keyID, in the header: the enclave fetches keyID, unwraps dek and opens the file. It does not
// check that wrapped holds dek (it cannot without the KEK); the sealer does (a file whose
// wrapped key holds another key never opens).
func SealWrapped(plaintext, dek []byte, keyID string, wrapped []byte) ([]byte, error) {
	if err := resourceid.Check(keyID); err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	w, err := layerkey.Parse(wrapped)
	if err != nil {
		return nil, err
	}
	if w.KID != keyID {
		return nil, fmt.Errorf("the wrapped content key is wrapped by %s, not by the key id %s", w.KID, keyID)
	}
	return seal(plaintext, dek, Header{KeyID: keyID, WrappedKey: base64.StdEncoding.EncodeToString(wrapped)})
}

func seal(plaintext, key []byte, h Header) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d (a raw AES-256 key)", len(key), KeySize)
	}
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("plaintext is %d bytes, more than the %d a sealed file holds", len(plaintext), MaxPlaintext)
	}
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(plaintext)
	h.Alg, h.PlaintextSHA256, h.PlaintextSize = Alg, hex.EncodeToString(sum[:]), int64(len(plaintext))
	h.Nonce = base64.StdEncoding.EncodeToString(nonce)
	hdr, err := strictjson.Encode(h)
	if err != nil {
		return nil, err
	}
	if len(hdr) > MaxHeader {
		return nil, fmt.Errorf("header of %d bytes, more than %d", len(hdr), MaxHeader)
	}
	aad := binary.BigEndian.AppendUint32([]byte(Magic), uint32(len(hdr)))
	aad = append(aad, hdr...)
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return aead.Seal(aad, nonce, plaintext, aad), nil
}

// HeadSize is enough of a sealed file's start for ParseHeader.
const HeadSize = len(Magic) + 4 + MaxHeader

// ParseHeader reads and checks the header at the start of a sealed file; head may be the whole
// file or only its first HeadSize bytes. It returns the header and the size of what precedes
// the ciphertext.
func ParseHeader(head []byte) (*Header, int, error) {
	h, _, n, err := parseHeader(head)
	return h, n, err
}

// parseHeader is ParseHeader that also returns the parsed wrapped_key (nil without one).
func parseHeader(head []byte) (*Header, *layerkey.Wrapped, int, error) {
	if !IsSealed(head) {
		return nil, nil, 0, ErrNotSealed
	}
	rest := head[len(Magic):]
	if len(rest) < 4 {
		return nil, nil, 0, errors.New("sealed file: truncated before the header length")
	}
	n := binary.BigEndian.Uint32(rest)
	if n == 0 || n > MaxHeader {
		return nil, nil, 0, fmt.Errorf("sealed file: header length %d (want 1 to %d)", n, MaxHeader)
	}
	if uint64(len(rest)-4) < uint64(n) {
		return nil, nil, 0, errors.New("sealed file: truncated in the header")
	}
	var hj headerJSON
	if err := strictjson.Decode(rest[4:4+n], &hj); err != nil {
		return nil, nil, 0, fmt.Errorf("sealed file: header: %w", err)
	}
	h := Header{KeyID: hj.KeyID, Alg: hj.Alg, PlaintextSHA256: hj.PlaintextSHA256, PlaintextSize: hj.PlaintextSize, Nonce: hj.Nonce}
	if err := resourceid.Check(h.KeyID); err != nil {
		return nil, nil, 0, fmt.Errorf("sealed file: key_id: %w", err)
	}
	if h.Alg != Alg {
		return nil, nil, 0, fmt.Errorf("sealed file: alg %q (only %s is defined)", h.Alg, Alg)
	}
	if sum, err := hex.DecodeString(h.PlaintextSHA256); err != nil || len(sum) != sha256.Size || hex.EncodeToString(sum) != h.PlaintextSHA256 {
		return nil, nil, 0, fmt.Errorf("sealed file: plaintext_sha256 %q is not 64 lower-case hex digits", h.PlaintextSHA256)
	}
	if h.PlaintextSize < 0 || h.PlaintextSize > MaxPlaintext {
		return nil, nil, 0, fmt.Errorf("sealed file: plaintext_size %d (want 0 to %d)", h.PlaintextSize, MaxPlaintext)
	}
	if nonce, err := base64.StdEncoding.Strict().DecodeString(h.Nonce); err != nil || len(nonce) != nonceSize {
		return nil, nil, 0, fmt.Errorf("sealed file: nonce %q is not %d bytes of base64", h.Nonce, nonceSize)
	}
	var w *layerkey.Wrapped
	if hj.WrappedKey != nil {
		h.WrappedKey = *hj.WrappedKey
		var err error
		if w, err = parseWrapped(&h); err != nil {
			return nil, nil, 0, err
		}
	}
	return &h, w, len(Magic) + 4 + int(n), nil
}

// parseWrapped reads a header's wrapped_key: base64 (standard, padded) of a layerkey wrapped key
// whose kid is the header's key_id.
func parseWrapped(h *Header) (*layerkey.Wrapped, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(h.WrappedKey)
	if err != nil || len(raw) == 0 {
		return nil, errors.New("sealed file: wrapped_key is not base64 of a wrapped key")
	}
	w, err := layerkey.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("sealed file: wrapped_key: %w", err)
	}
	if w.KID != h.KeyID {
		return nil, fmt.Errorf("sealed file: wrapped_key is wrapped by %s, but key_id is %s", w.KID, h.KeyID)
	}
	return w, nil
}

// CodeDigest is the SHA-256 that measures data as a workload's code (docs/measurement.md): for
// a file sealed with a wrapped content key, the plaintext's digest its header states (the
// ciphertext is fresh per sealing; the runtime runs only a plaintext with that digest); for
// anything else, tenant-sealed files included, the SHA-256 of data itself.
func CodeDigest(data []byte) [sha256.Size]byte {
	if sum, ok := WrappedDigest(data); ok {
		return sum
	}
	return sha256.Sum256(data)
}

// WrappedDigest returns the plaintext digest of a file sealed with a wrapped content key from
// its start head (at least HeadSize bytes, or the whole file), and false for anything else (not
// sealed, tenant-sealed, or a header that does not parse: that file never opens).
func WrappedDigest(head []byte) ([sha256.Size]byte, bool) {
	if !IsSealed(head) {
		return [sha256.Size]byte{}, false
	}
	h, _, err := ParseHeader(head)
	if err != nil || !h.Wrapped() {
		return [sha256.Size]byte{}, false
	}
	return h.PlaintextSum(), true
}

// Parse reads the header of a sealed file and checks it against the rest; it decrypts nothing.
func Parse(data []byte) (*File, error) {
	h, w, end, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	f := &File{Header: *h, wrapped: w, aad: data[:end], ciphertext: data[end:]}
	f.nonce, _ = base64.StdEncoding.Strict().DecodeString(h.Nonce)
	if int64(len(f.ciphertext)) != h.PlaintextSize+tagSize {
		return nil, fmt.Errorf("sealed file: %d bytes of ciphertext for a %d-byte plaintext (want %d): truncated or extended",
			len(f.ciphertext), h.PlaintextSize, h.PlaintextSize+tagSize)
	}
	return f, nil
}

// Open decrypts f with key and checks the plaintext against the header.
func (f *File) Open(key []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key %s is %d bytes, want %d", f.KeyID, len(key), KeySize)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, f.nonce, f.ciphertext, f.aad)
	if err != nil {
		return nil, fmt.Errorf("sealed file does not open with key %s: wrong key, or the file was changed", f.KeyID)
	}
	sum := sha256.Sum256(plain)
	want, _ := hex.DecodeString(f.PlaintextSHA256)
	if int64(len(plain)) != f.PlaintextSize || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		// Only a sealer that lied in the header gets here: the header is authenticated.
		return nil, errors.New("sealed file: the plaintext does not match the header's digest and size")
	}
	return plain, nil
}

// KeyFunc fetches the key of a broker resource, after attesting to the broker.
type KeyFunc = func(keyID string) ([]byte, error)

// Unseal opens data (a sealed file) with the key that key returns for its key id.
func Unseal(data []byte, key KeyFunc) ([]byte, error) {
	f, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if key == nil {
		// The settings' names, spelled out: this package links nothing of the runtime.
		return nil, fmt.Errorf("sealed with key %s, and this enclave has no key broker to fetch it from (set ENCLAVE_KBS_URL, ENCLAVE_KBS_PIN and add the key to the broker)",
			f.KeyID)
	}
	k, err := key(f.KeyID)
	if err != nil {
		return nil, fmt.Errorf("fetch key %s: %w", f.KeyID, err)
	}
	if f.wrapped == nil {
		return f.Open(k)
	}
	// k is the key-encryption key (the caller's buffer: not cleared here).
	dek, err := f.UnwrapKey(k)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return f.Open(dek)
}

// UnwrapKey returns the content key of a file sealed with a wrapped content key, unwrapped with
// kek, the broker's resource KeyID.
func (f *File) UnwrapKey(kek []byte) ([]byte, error) {
	if f.wrapped == nil {
		return nil, errors.New("sealed file: no wrapped content key (key_id is the content key)")
	}
	dek, err := f.wrapped.Unwrap(kek)
	if err != nil {
		return nil, fmt.Errorf("sealed file: content key: %w", err)
	}
	if len(dek) != KeySize {
		clear(dek)
		return nil, fmt.Errorf("sealed file: the wrapped content key is %d bytes, want %d", len(dek), KeySize)
	}
	return dek, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
