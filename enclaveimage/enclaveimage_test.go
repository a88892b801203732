package enclaveimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/imagelayer"
)

// layout writes a one-image layout with the given layers (data, media type, annotations).
func layout(t *testing.T, layers ...ocispec.Descriptor) (string, map[digest.Digest][]byte) {
	t.Helper()
	dir := t.TempDir()
	blobs := map[digest.Digest][]byte{}
	write := func(data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
		os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644)
		blobs[d] = data
		return ocispec.Descriptor{Digest: d, Size: int64(len(data))}
	}
	var diffIDs []digest.Digest
	for i, l := range layers {
		data := []byte(strings.Repeat("layer", i+1) + l.MediaType)
		d := write(data)
		layers[i].Digest, layers[i].Size = d.Digest, d.Size
		diffIDs = append(diffIDs, digest.FromString("plain "+d.Digest.String()))
	}
	cfg, _ := json.Marshal(ocispec.Image{Config: ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	c := write(cfg)
	c.MediaType = ocispec.MediaTypeImageConfig
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: c, Layers: layers})
	md := write(m)
	md.MediaType = ocispec.MediaTypeImageManifest
	md.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{md}})
	os.WriteFile(filepath.Join(dir, ocispec.ImageIndexFile), idx, 0o644)
	return dir, blobs
}

func readJSONFile[T any](t *testing.T, p string) T {
	t.Helper()
	var v T
	b, err := os.ReadFile(p)
	if err != nil || json.Unmarshal(b, &v) != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return v
}

func TestConvert(t *testing.T) {
	enc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip + "+encrypted",
		Annotations: map[string]string{imagelayer.AnnotationKeys: "d3JhcHBlZA==", imagelayer.AnnotationPubOpts: "e30="}}
	in, blobs := layout(t, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer}, enc)
	out := filepath.Join(t.TempDir(), "out")
	res, err := Convert(in, out, []string{"/app"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers != "/.inclavare/layers/0:/app" {
		t.Fatalf("layers %q", res.Layers)
	}
	blob := func(d digest.Digest) []byte {
		b, err := os.ReadFile(filepath.Join(out, "blobs", "sha256", d.Encoded()))
		if err != nil || digest.FromBytes(b) != d {
			t.Fatalf("blob %s: %v", d, err)
		}
		return b
	}
	idx := readJSONFile[ocispec.Index](t, filepath.Join(out, ocispec.ImageIndexFile))
	if idx.Manifests[0].Digest != res.Manifest || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "latest" {
		t.Fatalf("index %+v", idx)
	}
	var m ocispec.Manifest
	json.Unmarshal(blob(res.Manifest), &m)
	var cfg ocispec.Image
	json.Unmarshal(blob(m.Config.Digest), &cfg)
	if got := cfg.Config.Env; len(got) != 2 || got[1] != "ENCLAVE_LAYERS=/.inclavare/layers/0:/app" {
		t.Fatalf("env %q", got)
	}
	// The plain layer is untouched; the encrypted one is kept whole in a plain layer.
	in0 := readJSONFile[ocispec.Manifest](t, filepath.Join(in, "blobs", "sha256", readJSONFile[ocispec.Index](t, filepath.Join(in, ocispec.ImageIndexFile)).Manifests[0].Digest.Encoded()))
	if m.Layers[0].Digest != in0.Layers[0].Digest || cfg.RootFS.DiffIDs[0] == m.Layers[1].Digest {
		t.Fatal("the plain layer changed")
	}
	if m.Layers[1].MediaType != ocispec.MediaTypeImageLayer || cfg.RootFS.DiffIDs[1] != m.Layers[1].Digest {
		t.Fatalf("kept layer %+v, diff ID %s", m.Layers[1], cfg.RootFS.DiffIDs[1])
	}
	tr := tar.NewReader(bytes.NewReader(blob(m.Layers[1].Digest)))
	got := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = b
	}
	if !bytes.Equal(got[".inclavare/layers/0/blob"], blobs[in0.Layers[1].Digest]) {
		t.Fatal("the kept blob is not the encrypted layer")
	}
	var d ocispec.Descriptor
	if err := json.Unmarshal(got[".inclavare/layers/0/descriptor.json"], &d); err != nil || d.Digest != in0.Layers[1].Digest || d.Annotations[imagelayer.AnnotationKeys] != "d3JhcHBlZA==" {
		t.Fatalf("kept descriptor %+v %v", d, err)
	}
}

func TestConvertRefuses(t *testing.T) {
	enc := func() ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip + "+encrypted", Annotations: map[string]string{imagelayer.AnnotationKeys: "eA=="}}
	}
	plain := func() ocispec.Descriptor { return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer} }
	for _, c := range []struct {
		name    string
		layers  []ocispec.Descriptor
		targets []string
		want    string
	}{
		{"no encrypted layer", []ocispec.Descriptor{plain()}, []string{"/app"}, "no layer encrypted"},
		{"too few targets", []ocispec.Descriptor{enc(), enc()}, []string{"/app"}, "more encrypted layers"},
		{"too many targets", []ocispec.Descriptor{enc()}, []string{"/app", "/data"}, "2 targets"},
		{"other encryption", []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip + "+encrypted", Annotations: map[string]string{"org.opencontainers.image.enc.keys.jwe": "x"}}}, []string{"/app"}, "not for the verdictd key provider"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, _ := layout(t, c.layers...)
			out := filepath.Join(t.TempDir(), "out")
			if _, err := Convert(in, out, c.targets); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if _, err := os.Lstat(out); err == nil {
				t.Fatal("a refused conversion left its output")
			}
			left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".enclaveimage-*"))
			if len(left) > 0 {
				t.Fatalf("temporary output left: %v", left)
			}
		})
	}
	// A blob that does not match its descriptor.
	in, blobs := layout(t, enc())
	for d := range blobs {
		os.WriteFile(filepath.Join(in, "blobs", "sha256", d.Encoded()), []byte("changed"), 0o644)
		break
	}
	if _, err := Convert(in, filepath.Join(t.TempDir(), "out"), []string{"/app"}); err == nil {
		t.Fatal("a changed blob was converted")
	}
}
