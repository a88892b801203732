package imagelayer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/layerkey"
)

// verdictdWrapper is an ocicrypt key wrapper that wraps as verdictd does (layerkey), so that the
// tests encrypt layers with ocicrypt's own encryption code: interoperability, not a self-test.
type verdictdWrapper struct{}

func (verdictdWrapper) WrapKeys(ec *config.EncryptConfig, optsData []byte) ([]byte, error) {
	p := ec.Parameters["verdictd-test"]
	if len(p) != 2 {
		return nil, nil
	}
	return layerkey.Wrap(p[1], string(p[0]), optsData)
}
func (verdictdWrapper) UnwrapKey(*config.DecryptConfig, []byte) ([]byte, error) { return nil, nil }
func (verdictdWrapper) GetAnnotationID() string                                 { return AnnotationKeys }
func (verdictdWrapper) NoPossibleKeys(map[string][][]byte) bool                 { return true }
func (verdictdWrapper) GetPrivateKeys(map[string][][]byte) [][]byte             { return nil }
func (verdictdWrapper) GetKeyIdsFromPacket(string) ([]uint64, error)            { return nil, nil }
func (verdictdWrapper) GetRecipients(string) ([]string, error)                  { return nil, nil }

var registerOnce sync.Once

// encrypt encrypts the layer (a tar, gzipped when gz) with ocicrypt for the KEK kek under kid.
func encrypt(t *testing.T, layer []byte, gz bool, kid string, kek []byte) ([]byte, ocispec.Descriptor) {
	t.Helper()
	registerOnce.Do(func() { ocicrypt.RegisterKeyWrapper("provider.verdictd", verdictdWrapper{}) })
	mt := ocispec.MediaTypeImageLayer
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(layer)
		zw.Close()
		layer, mt = b.Bytes(), ocispec.MediaTypeImageLayerGzip
	}
	desc := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	ec := &config.EncryptConfig{Parameters: map[string][][]byte{"verdictd-test": {[]byte(kid), kek}}}
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
	return blob, ocispec.Descriptor{MediaType: mt + "+encrypted", Digest: digest.FromBytes(blob), Size: int64(len(blob)), Annotations: ann}
}

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarOf(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

// fixture is a root with a layer directory /layers/0 and an empty target /app.
type fixture struct {
	dir  string
	root *os.File
	kek  []byte
}

func newFixture(t *testing.T, blob []byte, desc ocispec.Descriptor) *fixture {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "layers", "0"), 0o755)
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	d, _ := json.Marshal(desc)
	os.WriteFile(filepath.Join(dir, "layers", "0", DescriptorFile), d, 0o644)
	os.WriteFile(filepath.Join(dir, "layers", "0", BlobFile), blob, 0o644)
	root, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &fixture{dir: dir, root: root}
}

func (f *fixture) unpack(kek []byte) error {
	digest, err := BlobDigest(f.root, "/layers/0")
	if err != nil {
		return err
	}
	return Unpack(f.root, Layer{Dir: "/layers/0", Target: "/app"}, digest, func(kid string) ([]byte, error) {
		if kid != "tenant/key/image" {
			return nil, os.ErrNotExist
		}
		return kek, nil
	})
}

func newKEK() []byte {
	k := make([]byte, layerkey.KEKSize)
	rand.Read(k)
	return k
}

func (f *fixture) files(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(filepath.Join(f.dir, "app"), func(p string, info os.FileInfo, err error) error {
		if err != nil || p == filepath.Join(f.dir, "app") {
			return nil
		}
		rel, _ := filepath.Rel(f.dir, p)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "-> " + l
		case info.IsDir():
			out[rel] = "dir " + info.Mode().Perm().String()
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b) + " " + info.Mode().Perm().String()
		}
		return nil
	})
	return out
}

// TestUnpack: a layer encrypted by ocicrypt (gzip and plain tar) unpacks under the target with its
// files, modes and links.
func TestUnpack(t *testing.T) {
	layer := tarOf(t,
		entry{name: "app/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "app/bin/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "app/bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\necho confidential\n", mode: 0o4755},
		entry{name: "./app/model.bin", typ: tar.TypeReg, body: "weights"},
		entry{name: "app/link", typ: tar.TypeSymlink, link: "/etc/passwd"},
		entry{name: "app/hard", typ: tar.TypeLink, link: "app/model.bin"},
		entry{name: "app/deep/er/file", typ: tar.TypeReg, body: "made its parents"},
	)
	for _, gz := range []bool{true, false} {
		kek := newKEK()
		blob, desc := encrypt(t, layer, gz, "tenant/key/image", kek)
		if bytes.Contains(blob, []byte("confidential")) {
			t.Fatal("the blob holds plaintext")
		}
		f := newFixture(t, blob, desc)
		if err := f.unpack(kek); err != nil {
			t.Fatalf("gzip %v: %v", gz, err)
		}
		got := f.files(t)
		want := map[string]string{
			"app/bin": "dir -rwxr-xr-x", "app/bin/tool": "#!/bin/sh\necho confidential\n -rwxr-xr-x",
			"app/model.bin": "weights -rw-r--r--", "app/link": "-> /etc/passwd", "app/hard": "weights -rw-r--r--",
			"app/deep": "dir -rwxr-xr-x", "app/deep/er": "dir -rwxr-xr-x", "app/deep/er/file": "made its parents -rw-r--r--",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("gzip %v: %s = %q, want %q", gz, k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("gzip %v: files %v", gz, got)
		}
	}
}

// TestRefused: whatever is wrong, Unpack fails naming it and leaves the target empty.
func TestRefused(t *testing.T) {
	noise := make([]byte, 50000)
	rand.Read(noise)
	good := tarOf(t, entry{name: "app/a", typ: tar.TypeReg, body: string(noise)})
	kek := newKEK()
	blob, desc := encrypt(t, good, true, "tenant/key/image", kek)
	otherBlob, otherDesc := encrypt(t, tarOf(t, entry{name: "app/b", typ: tar.TypeReg, body: "other"}), true, "tenant/key/image", kek)
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	withAnn := func(d ocispec.Descriptor, k, v string) ocispec.Descriptor {
		a := map[string]string{}
		for x, y := range d.Annotations {
			a[x] = y
		}
		a[k] = v
		d.Annotations = a
		return d
	}
	mkLayer := func(entries ...entry) ([]byte, ocispec.Descriptor) {
		return encrypt(t, tarOf(t, entries...), false, "tenant/key/image", kek)
	}
	cases := []struct {
		name string
		blob []byte
		desc ocispec.Descriptor
		kek  []byte
		want string
	}{
		{"wrong kek", blob, desc, newKEK(), "does not open"},
		{"blob changed, descriptor updated", flip(blob, 5000), func() ocispec.Descriptor {
			d := desc
			d.Digest = digest.FromBytes(flip(blob, 5000))
			return d
		}(), kek, "does not authenticate"},
		{"blob of another layer", otherBlob, func() ocispec.Descriptor {
			d := desc
			d.Digest, d.Size = otherDesc.Digest, otherDesc.Size
			return d
		}(), kek, "does not authenticate"},
		{"descriptor names another blob", blob, otherDesc, kek, "the measured blob"},
		{"pubopts of another layer", blob, withAnn(desc, AnnotationPubOpts, otherDesc.Annotations[AnnotationPubOpts]), kek, "does not authenticate"},
		{"wrapped key of another layer", blob, withAnn(desc, AnnotationKeys, otherDesc.Annotations[AnnotationKeys]), kek, "does not authenticate"},
		{"no wrapped key", blob, withAnn(desc, AnnotationKeys, ""), kek, "no " + AnnotationKeys},
		{"not base64", blob, withAnn(desc, AnnotationKeys, "!!"), kek, "not base64"},
		{"unknown kid", blob, withAnn(desc, AnnotationKeys, base64.StdEncoding.EncodeToString(must(layerkey.Wrap(kek, "tenant/key/other", []byte("{}"))))), kek, "file does not exist"},
		{"media type", blob, func() ocispec.Descriptor { d := desc; d.MediaType = ocispec.MediaTypeImageLayerGzip; return d }(), kek, "not an encrypted layer"},
	}
	for _, c := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"outside the target", []entry{{name: "etc/passwd", typ: tar.TypeReg, body: "x"}}, "outside the target"},
		{"traversal", []entry{{name: "app/../etc/passwd", typ: tar.TypeReg, body: "x"}}, "outside the target"},
		{"through a symlink", []entry{{name: "app/l", typ: tar.TypeSymlink, link: "/etc"}, {name: "app/l/passwd", typ: tar.TypeReg, body: "x"}}, "symbolic link"},
		{"hard link out", []entry{{name: "app/h", typ: tar.TypeLink, link: "etc/passwd"}}, "outside the target"},
		{"device", []entry{{name: "app/null", typ: tar.TypeChar}}, "not unpacked"},
		{"whiteout", []entry{{name: "app/.wh.x", typ: tar.TypeReg}}, "whiteout"},
	} {
		b, d := mkLayer(c.entries...)
		cases = append(cases, struct {
			name string
			blob []byte
			desc ocispec.Descriptor
			kek  []byte
			want string
		}{c.name, b, d, kek, c.want})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.blob, c.desc)
			err := f.unpack(c.kek)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			if got := f.files(t); len(got) != 0 {
				t.Fatalf("the target is not empty after a failure: %v", got)
			}
			if _, err := os.Lstat(filepath.Join(f.dir, "etc")); err == nil {
				t.Fatal("something was written outside the target")
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
