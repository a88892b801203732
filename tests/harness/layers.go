package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/imagelayer"
	"github.com/inclavare-containers/inclavare-go/layerkey"
)

// verdictdWrapper is an ocicrypt key wrapper that wraps layer keys as verdictd's key provider does
// (package layerkey), so that tests encrypt layers with ocicrypt's own code.
type verdictdWrapper struct{}

const wrapperParam = "inclavare-test-verdictd"

func (verdictdWrapper) WrapKeys(ec *config.EncryptConfig, optsData []byte) ([]byte, error) {
	p := ec.Parameters[wrapperParam]
	if len(p) != 2 {
		return nil, nil
	}
	return layerkey.Wrap(p[1], string(p[0]), optsData)
}
func (verdictdWrapper) UnwrapKey(*config.DecryptConfig, []byte) ([]byte, error) { return nil, nil }
func (verdictdWrapper) GetAnnotationID() string                                 { return imagelayer.AnnotationKeys }
func (verdictdWrapper) NoPossibleKeys(map[string][][]byte) bool                 { return true }
func (verdictdWrapper) GetPrivateKeys(map[string][][]byte) [][]byte             { return nil }
func (verdictdWrapper) GetKeyIdsFromPacket(string) ([]uint64, error)            { return nil, nil }
func (verdictdWrapper) GetRecipients(string) ([]string, error)                  { return nil, nil }

var registerWrapper sync.Once

// EncryptedLayer makes a gzipped image layer of files (paths from the root, regular files with
// mode 0755) and encrypts it with ocicrypt, its key wrapped for the broker resource kid with kek,
// as `skopeo copy --encryption-key provider:verdictd:<kid>` does. It returns the encrypted blob,
// its descriptor and the layer's diff ID (the digest of the uncompressed plaintext tar).
func EncryptedLayer(t testing.TB, files map[string][]byte, kid string, kek []byte) ([]byte, ocispec.Descriptor, digest.Digest) {
	t.Helper()
	registerWrapper.Do(func() { ocicrypt.RegisterKeyWrapper("provider.verdictd", verdictdWrapper{}) })
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := filepath.Dir(n); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(files[n]))})
		tw.Write(files[n])
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	layer := gz.Bytes()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	ec := &config.EncryptConfig{Parameters: map[string][][]byte{wrapperParam: {[]byte(kid), kek}}}
	r, fin, err := ocicrypt.EncryptLayer(ec, bytes.NewReader(layer), desc)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := fin()
	if err != nil {
		t.Fatal(err)
	}
	return blob, ocispec.Descriptor{MediaType: desc.MediaType + "+encrypted", Digest: digest.FromBytes(blob), Size: int64(len(blob)), Annotations: ann},
		digest.FromBytes(tarBuf.Bytes())
}

// WriteLayout writes a single-image OCI layout at dir: the layers (blobs and descriptors) with
// their diff IDs, and config as the image's configuration.
func WriteLayout(t testing.TB, dir string, blobs [][]byte, layers []ocispec.Descriptor, diffIDs []digest.Digest, config ocispec.ImageConfig) {
	t.Helper()
	write := func(data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return ocispec.Descriptor{Digest: d, Size: int64(len(data))}
	}
	for _, b := range blobs {
		write(b)
	}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}, Config: config,
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cdesc := write(cfg)
	cdesc.MediaType = ocispec.MediaTypeImageConfig
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cdesc, Layers: layers})
	mdesc := write(m)
	mdesc.MediaType = ocispec.MediaTypeImageManifest
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{mdesc}})
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageIndexFile), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		t.Fatal(err)
	}
}

// WriteLayerDir writes an encrypted layer into the bundle's rootfs at dir (relative to the
// rootfs) as the enclave reads it: blob and descriptor.json.
func WriteLayerDir(t testing.TB, bundle, dir string, blob []byte, desc ocispec.Descriptor) {
	t.Helper()
	d, err := json.Marshal(desc)
	if err != nil {
		t.Fatal(err)
	}
	WriteRootfsFile(t, bundle, filepath.Join(dir, imagelayer.BlobFile), blob, 0o644)
	WriteRootfsFile(t, bundle, filepath.Join(dir, imagelayer.DescriptorFile), d, 0o644)
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", dir)); err != nil {
		t.Fatal(err)
	}
}
