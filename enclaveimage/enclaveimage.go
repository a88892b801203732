// Package enclaveimage is the tenant's conversion of an image whose layers were encrypted for
// verdictd (skopeo copy --encryption-key provider:verdictd:<kid>) into one that any engine can
// pull and unpack while those layers stay encrypted: each encrypted layer is replaced by an
// ordinary layer that holds it, as it is, in a layer directory (/.inclavare/layers/<n>/blob and
// descriptor.json, package imagelayer), and the image's environment names those directories and
// their targets in ENCLAVE_LAYERS. Docker, containerd and CRI unpack such an image as any other; the
// enclave alone decrypts the layers, after attesting (docs/encrypted-layers.md).
//
// It works on OCI image layouts (skopeo's oci: transport). It must never write a layer's
// plaintext (it never has it), never change a layer it does not convert, and never leave a
// half-written output: the output is made in a new directory that must not exist.
package enclaveimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/imagelayer"
)

// LayersDir is where the converted image keeps its encrypted layers.
const LayersDir = "/.inclavare/layers"

// maxDocument bounds an index, manifest or config read from the layout.
const maxDocument = 4 << 20

// Result says what Convert did.
type Result struct {
	// Layers is the ENCLAVE_LAYERS value written into the image's environment.
	Layers string
	// Manifest is the digest of the converted manifest.
	Manifest digest.Digest
}

// Convert reads the single-manifest OCI layout in, converts each layer encrypted for verdictd
// (targets[i] is the target of the i-th such layer) and writes the result as a new layout out.
func Convert(in, out string, targets []string) (*Result, error) {
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("%s exists: the output is a new directory", out)
	}
	idx, err := readJSON[ocispec.Index](filepath.Join(in, ocispec.ImageIndexFile), maxDocument)
	if err != nil {
		return nil, err
	}
	if len(idx.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d manifests; convert one image (one platform) at a time", in, len(idx.Manifests))
	}
	mdesc := idx.Manifests[0]
	if mdesc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s: manifest media type %q (want %s)", in, mdesc.MediaType, ocispec.MediaTypeImageManifest)
	}
	manifest, err := readBlobJSON[ocispec.Manifest](in, mdesc)
	if err != nil {
		return nil, err
	}
	config, err := readBlobJSON[ocispec.Image](in, manifest.Config)
	if err != nil {
		return nil, err
	}
	if len(config.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, fmt.Errorf("%s: %d layers but %d diff IDs", in, len(manifest.Layers), len(config.RootFS.DiffIDs))
	}
	for _, kv := range config.Config.Env {
		if strings.HasPrefix(kv, "ENCLAVE_LAYERS=") {
			return nil, fmt.Errorf("%s: the image already sets ENCLAVE_LAYERS", in)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), ".enclaveimage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	w := &writer{dir: tmp}
	if err := w.init(); err != nil {
		return nil, err
	}
	var settings []string
	n := 0
	for i, l := range manifest.Layers {
		if _, ok := imagelayer.MediaTypes[l.MediaType]; !ok || l.Annotations[imagelayer.AnnotationKeys] == "" {
			if strings.HasSuffix(l.MediaType, "+encrypted") {
				return nil, fmt.Errorf("%s: layer %d (%s, %s) is encrypted, but not for the verdictd key provider or not in a form the enclave unpacks", in, i, l.Digest, l.MediaType)
			}
			if err := w.copyBlob(in, l); err != nil {
				return nil, err
			}
			continue
		}
		if n >= len(targets) {
			return nil, fmt.Errorf("%s has more encrypted layers than the %d targets given", in, len(targets))
		}
		dir := path.Join(LayersDir, fmt.Sprint(n))
		kept, err := w.keepLayer(in, l, dir)
		if err != nil {
			return nil, err
		}
		manifest.Layers[i] = kept
		config.RootFS.DiffIDs[i] = kept.Digest // an uncompressed layer is its own diff ID
		settings = append(settings, dir+":"+targets[n])
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s has no layer encrypted for the verdictd key provider", in)
	}
	if n != len(targets) {
		return nil, fmt.Errorf("%s has %d encrypted layers, and %d targets were given", in, n, len(targets))
	}
	layers := strings.Join(settings, ",")
	config.Config.Env = append(config.Config.Env, "ENCLAVE_LAYERS="+layers)
	cdesc, err := w.writeJSON(config, manifest.Config.MediaType)
	if err != nil {
		return nil, err
	}
	manifest.Config = cdesc
	newM, err := w.writeJSON(manifest, mdesc.MediaType)
	if err != nil {
		return nil, err
	}
	newM.Annotations, newM.Platform = mdesc.Annotations, mdesc.Platform
	idx.Manifests = []ocispec.Descriptor{newM}
	if err := w.writeFile(ocispec.ImageIndexFile, mustJSON(idx)); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return &Result{Layers: layers, Manifest: newM.Digest}, nil
}

// writer makes the output layout.
type writer struct{ dir string }

func (w *writer) init() error {
	if err := os.MkdirAll(filepath.Join(w.dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	return w.writeFile(ocispec.ImageLayoutFile, mustJSON(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}))
}

func (w *writer) writeFile(name string, data []byte) error {
	return os.WriteFile(filepath.Join(w.dir, name), data, 0o644)
}

func (w *writer) writeBlob(data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	return d, w.writeFile(filepath.Join("blobs", "sha256", d.Encoded()), data)
}

func (w *writer) writeJSON(v any, mediaType string) (ocispec.Descriptor, error) {
	data := mustJSON(v)
	d, err := w.writeBlob(data)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, err
}

// copyBlob copies a blob of in, checking its digest.
func (w *writer) copyBlob(in string, d ocispec.Descriptor) error {
	data, err := readBlob(in, d)
	if err != nil {
		return err
	}
	_, err = w.writeBlob(data)
	return err
}

// keepLayer writes an uncompressed layer holding the encrypted layer d in dir.
func (w *writer) keepLayer(in string, d ocispec.Descriptor, dir string) (ocispec.Descriptor, error) {
	blob, err := readBlob(in, d)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	descJSON := mustJSON(d)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	var parents []string
	for p := strings.TrimPrefix(dir, "/"); p != "."; p = path.Dir(p) {
		parents = append([]string{p}, parents...)
	}
	for _, p := range parents {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{imagelayer.BlobFile, blob}, {imagelayer.DescriptorFile, descJSON}} {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: path.Join(strings.TrimPrefix(dir, "/"), f.name), Mode: 0o444, Size: int64(len(f.data)), ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return ocispec.Descriptor{}, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	dg, err := w.writeBlob(buf.Bytes())
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: dg, Size: int64(buf.Len())}, nil
}

func readBlob(in string, d ocispec.Descriptor) ([]byte, error) {
	if err := d.Digest.Validate(); err != nil || d.Digest.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("blob digest %q: want a sha256 digest", d.Digest)
	}
	f, err := os.Open(filepath.Join(in, "blobs", "sha256", d.Digest.Encoded()))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, d.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != d.Size || digest.FromBytes(data) != d.Digest {
		return nil, fmt.Errorf("blob %s in %s does not match its descriptor (size or digest)", d.Digest, in)
	}
	return data, nil
}

func readBlobJSON[T any](in string, d ocispec.Descriptor) (*T, error) {
	if d.Size > maxDocument {
		return nil, fmt.Errorf("%s: document %s of %d bytes is too large", in, d.Digest, d.Size)
	}
	data, err := readBlob(in, d)
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", in, d.Digest, err)
	}
	return &v, nil
}

func readJSON[T any](p string, max int64) (*T, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, errors.New(p + " is too large")
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &v, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only types of this package and the image spec: always marshal
	}
	return b
}
