package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
	"github.com/opencontainers/go-digest"
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
// as `skopeo copy --encryption-key provider:verdictd:<kid>` does. It returns the encrypted blob
// and its descriptor.
func EncryptedLayer(t testing.TB, files map[string][]byte, kid string, kek []byte) ([]byte, ocispec.Descriptor) {
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
	return blob, ocispec.Descriptor{MediaType: desc.MediaType + "+encrypted", Digest: digest.FromBytes(blob), Size: int64(len(blob)), Annotations: ann}
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
