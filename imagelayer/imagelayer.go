// Package imagelayer decrypts and unpacks, inside the enclave, an image layer encrypted with
// ocicrypt (skopeo copy --encryption-key provider:verdictd:<kid>) whose layer key verdictd
// wrapped (package layerkey): the layer stays encrypted in the container's rootfs, as
// <dir>/blob and its OCI descriptor <dir>/descriptor.json, and only the enclave, after
// attesting to the broker and receiving the key-encryption key, sees its files, in a private
// in-memory file system (docs/encrypted-layers.md).
//
// The cipher is ocicrypt's AES_256_CTR_HMAC_SHA256, implemented here from its definition: AES-256
// in CTR mode with the layer key and the 16-byte nonce of the private options, and HMAC-SHA-256
// under the same key over the ciphertext, compared with the public options' hmac. The private
// options (key, nonce, the plaintext's digest) arrive authenticated by the wrapped key.
//
// It must never leave a file of a layer that did not authenticate (the blob's digest against the
// measurement, the HMAC, the plaintext's digest against the private options): the files are
// written while the stream is read, and removed again when any check fails at its end, before the
// workload runs. It must never write outside the target, follow a link while unpacking, or create
// a device, and it must never accept a descriptor or options with more than one reading.
package imagelayer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
	"github.com/inclavare-containers/inclavare-go/layerkey"
)

const (
	// DescriptorFile and BlobFile are the files of a layer directory.
	DescriptorFile = "descriptor.json"
	BlobFile       = "blob"
	// AnnotationKeys is where ocicrypt keeps the layer key wrapped by the verdictd key provider
	// (base64, comma-separated when there are several), AnnotationPubOpts its public options.
	AnnotationKeys    = "org.opencontainers.image.enc.keys.provider.verdictd"
	AnnotationPubOpts = "org.opencontainers.image.enc.pubopts"
	// CipherType is the only cipher ocicrypt defines.
	CipherType = "AES_256_CTR_HMAC_SHA256"

	maxDescriptor = 1 << 20
)

// MediaTypes are the encrypted layer types unpacked, and how each is compressed.
var MediaTypes = map[string]string{
	ocispec.MediaTypeImageLayer + "+encrypted":                    "",
	ocispec.MediaTypeImageLayerGzip + "+encrypted":                "gzip",
	"application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted": "gzip",
}

// KEKFunc returns the key-encryption key of a broker resource, after attesting to the broker.
type KEKFunc func(kid string) ([]byte, error)

// BlobDigest returns the hex SHA-256 of the layer's blob: what the enclave's measurement covers.
// root is the directory the layer directory dir (absolute, as the container sees it) is in.
func BlobDigest(root *os.File, dir string) (string, error) {
	f, err := openIn(root, path.Join(dir, BlobFile), unix.O_RDONLY)
	if err != nil {
		return "", fmt.Errorf("encrypted layer %s: %w", dir, err)
	}
	defer f.Close()
	if err := regular(f); err != nil {
		return "", fmt.Errorf("encrypted layer %s: %w", dir, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("encrypted layer %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Descriptor reads and checks the layer's descriptor: an encrypted media type this package
// unpacks, a sha256 digest, the verdictd key annotation.
func Descriptor(root *os.File, dir string) (*ocispec.Descriptor, error) {
	f, err := openIn(root, path.Join(dir, DescriptorFile), unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("encrypted layer %s: %w", dir, err)
	}
	defer f.Close()
	if err := regular(f); err != nil {
		return nil, fmt.Errorf("encrypted layer %s: %w", dir, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxDescriptor+1))
	if err != nil {
		return nil, fmt.Errorf("encrypted layer %s: %w", dir, err)
	}
	if len(data) > maxDescriptor {
		return nil, fmt.Errorf("encrypted layer %s: %s is larger than %d bytes", dir, DescriptorFile, maxDescriptor)
	}
	// The descriptor is not authenticated (the blob and the wrapped key are): one reading is
	// still required, as of every document rune acts on.
	if err := strictjson.CheckStructure(data); err != nil {
		return nil, fmt.Errorf("encrypted layer %s: %s: %w", dir, DescriptorFile, err)
	}
	var d ocispec.Descriptor
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("encrypted layer %s: %s: %w", dir, DescriptorFile, err)
	}
	if _, ok := MediaTypes[d.MediaType]; !ok {
		return nil, fmt.Errorf("encrypted layer %s: media type %q is not an encrypted layer this enclave unpacks (%s)", dir, d.MediaType, strings.Join(mediaTypeList(), ", "))
	}
	if d.Digest.Algorithm() != "sha256" || d.Digest.Validate() != nil {
		return nil, fmt.Errorf("encrypted layer %s: digest %q is not a sha256 digest", dir, d.Digest)
	}
	if d.Annotations[AnnotationKeys] == "" {
		return nil, fmt.Errorf("encrypted layer %s: no %s annotation: the layer was not encrypted for the verdictd key provider", dir, AnnotationKeys)
	}
	return &d, nil
}

func mediaTypeList() []string {
	var out []string
	for m := range MediaTypes {
		out = append(out, m)
	}
	return out
}

// privateOptions are ocicrypt's private layer options (what the wrapped key holds).
type privateOptions struct {
	SymKey        []byte            `json:"symkey"`
	Digest        string            `json:"digest"`
	CipherOptions map[string][]byte `json:"cipheroptions"`
}

// publicOptions are ocicrypt's public layer options (the pubopts annotation).
type publicOptions struct {
	Cipher        string            `json:"cipher"`
	HMAC          []byte            `json:"hmac"`
	CipherOptions map[string][]byte `json:"cipheroptions"`
}

// Options unwraps the layer key of d with the KEK that kek returns for the wrapped key's kid and
// reads the cipher options.
func Options(d *ocispec.Descriptor, kek KEKFunc) (*Cipher, error) {
	var errs []string
	for _, b64 := range strings.Split(d.Annotations[AnnotationKeys], ",") {
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil {
			errs = append(errs, "a wrapped key is not base64")
			continue
		}
		w, err := layerkey.Parse(raw)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		k, err := kek(w.KID)
		if err != nil {
			errs = append(errs, fmt.Sprintf("fetch key-encryption key %s: %v", w.KID, err))
			continue
		}
		opts, err := w.Unwrap(k)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return newCipher(opts, d.Annotations[AnnotationPubOpts])
	}
	return nil, fmt.Errorf("no wrapped layer key opens: %s", strings.Join(errs, "; "))
}

// Cipher is an unwrapped layer key and its options.
type Cipher struct {
	key, nonce, hmac []byte
	plainDigest      string // hex SHA-256 of the (compressed) plaintext layer
}

func newCipher(privData []byte, pubB64 string) (*Cipher, error) {
	if err := strictjson.CheckStructure(privData); err != nil {
		return nil, fmt.Errorf("layer key options: %w", err)
	}
	var priv privateOptions
	if err := json.Unmarshal(privData, &priv); err != nil {
		return nil, fmt.Errorf("layer key options: %w", err)
	}
	pubData, err := base64.StdEncoding.Strict().DecodeString(pubB64)
	if err != nil || pubB64 == "" {
		return nil, fmt.Errorf("layer %s annotation missing or not base64", AnnotationPubOpts)
	}
	if err := strictjson.CheckStructure(pubData); err != nil {
		return nil, fmt.Errorf("layer public options: %w", err)
	}
	var pub publicOptions
	if err := json.Unmarshal(pubData, &pub); err != nil {
		return nil, fmt.Errorf("layer public options: %w", err)
	}
	if pub.Cipher != CipherType {
		return nil, fmt.Errorf("layer cipher %q (only %s is defined)", pub.Cipher, CipherType)
	}
	if len(priv.SymKey) != 32 {
		return nil, fmt.Errorf("layer key is %d bytes, want 32", len(priv.SymKey))
	}
	nonce := priv.CipherOptions["nonce"]
	if len(nonce) != aes.BlockSize {
		return nil, fmt.Errorf("layer nonce is %d bytes, want %d", len(nonce), aes.BlockSize)
	}
	if len(pub.HMAC) != sha256.Size {
		return nil, fmt.Errorf("layer hmac is %d bytes, want %d", len(pub.HMAC), sha256.Size)
	}
	alg, hexDigest, ok := strings.Cut(priv.Digest, ":")
	if b, err := hex.DecodeString(hexDigest); !ok || alg != "sha256" || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("layer key options: digest %q is not a sha256 digest", priv.Digest)
	}
	return &Cipher{key: priv.SymKey, nonce: nonce, hmac: pub.HMAC, plainDigest: hexDigest}, nil
}

// decrypter reads plaintext from the ciphertext in r, hashing the ciphertext (for the blob's
// digest and the HMAC) and the plaintext (for the private options' digest).
type decrypter struct {
	r      io.Reader
	stream cipher.Stream
	mac    hash.Hash
	blob   hash.Hash
	plain  hash.Hash
	// diff hashes the uncompressed layer (the tar): containers/image compresses a layer before
	// ocicrypt encrypts it and names the digest of the uncompressed one in the options.
	diff       hash.Hash
	total      int64
	max        int64
	exhausted  bool
	readFailed error
}

func (c *Cipher) decrypter(r io.Reader, max int64) (*decrypter, error) {
	block, err := aes.NewCipher(c.key)
	if err != nil {
		return nil, err
	}
	return &decrypter{r: r, stream: cipher.NewCTR(block, c.nonce), mac: hmac.New(sha256.New, c.key),
		blob: sha256.New(), plain: sha256.New(), diff: sha256.New(), max: max}, nil
}

func (d *decrypter) Read(p []byte) (int, error) {
	if d.readFailed != nil {
		return 0, d.readFailed
	}
	n, err := d.r.Read(p)
	if n > 0 {
		d.total += int64(n)
		if d.max > 0 && d.total > d.max {
			d.readFailed = fmt.Errorf("encrypted layer larger than %d bytes", d.max)
			return 0, d.readFailed
		}
		d.mac.Write(p[:n])
		d.blob.Write(p[:n])
		d.stream.XORKeyStream(p[:n], p[:n])
		d.plain.Write(p[:n])
	}
	if err == io.EOF {
		d.exhausted = true
	} else if err != nil {
		d.readFailed = err
	}
	return n, err
}

// verify checks, once the whole blob was read, the blob's digest, the HMAC and the plaintext's
// digest: of the decrypted layer as stored, or of the uncompressed layer (diff ID), whichever the
// encrypting tool named (the options are authenticated either way).
func (d *decrypter) verify(c *Cipher, blobDigest string) error {
	if err := d.authenticate(c, blobDigest); err != nil {
		return err
	}
	want, _ := hex.DecodeString(c.plainDigest)
	if subtle.ConstantTimeCompare(d.plain.Sum(nil), want) != 1 && subtle.ConstantTimeCompare(d.diff.Sum(nil), want) != 1 {
		return errors.New("the decrypted layer's digest is not the one its key options name")
	}
	return nil
}

// authenticate reads the rest of the blob and checks its digest and HMAC.
func (d *decrypter) authenticate(c *Cipher, blobDigest string) error {
	if !d.exhausted {
		if _, err := io.Copy(io.Discard, d); err != nil {
			return err
		}
	}
	if got := hex.EncodeToString(d.blob.Sum(nil)); got != blobDigest {
		return fmt.Errorf("the encrypted layer's SHA-256 is %s, not the measured %s: it changed", got, blobDigest)
	}
	if !hmac.Equal(d.mac.Sum(nil), c.hmac) {
		return errors.New("the encrypted layer does not authenticate (HMAC): it was changed, or its options do not belong to it")
	}
	return nil
}

// BlobDigests returns the hex SHA-256 of each layer directory's blob, in order, what the
// measurement covers (enclave.LayerMeasured); a layer whose descriptor is unusable or names
// another blob is an error, so that create fails rather than start.
func BlobDigests(root *os.File, dirs []string) ([]string, error) {
	var out []string
	for _, dir := range dirs {
		d, err := Descriptor(root, dir)
		if err != nil {
			return nil, err
		}
		sum, err := BlobDigest(root, dir)
		if err != nil {
			return nil, err
		}
		if d.Digest.Encoded() != sum {
			return nil, fmt.Errorf("encrypted layer %s: its descriptor names %s, the blob is sha256:%s", dir, d.Digest, sum)
		}
		out = append(out, sum)
	}
	return out, nil
}
