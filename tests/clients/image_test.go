package clients

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readTar returns a tarball's headers and regular-file contents by name.
func readTar(t *testing.T, data []byte) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	hdrs := map[string]*tar.Header{}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, files
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if _, dup := hdrs[hdr.Name]; dup {
			t.Fatalf("duplicate tar entry %s", hdr.Name)
		}
		hdrs[hdr.Name] = hdr
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read %s: %v", hdr.Name, err)
			}
			files[hdr.Name] = b
		}
	}
}

func fakeBusybox(t *testing.T) (string, []byte) {
	t.Helper()
	content := []byte("\x7fELF not really busybox")
	path := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(path, content, 0o755); err != nil {
		t.Fatal(err)
	}
	return path, content
}

func TestBusyboxRootfsTar(t *testing.T) {
	path, content := fakeBusybox(t)
	layer, err := BusyboxRootfsTar(path)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, files := readTar(t, layer)
	if !bytes.Equal(files["bin/busybox"], content) || hdrs["bin/busybox"].Mode != 0o755 {
		t.Fatalf("bin/busybox: header %+v, content %q", hdrs["bin/busybox"], files["bin/busybox"])
	}
	for _, a := range BusyboxApplets {
		h := hdrs["bin/"+a]
		if h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("applet %s: header %+v, want symlink to busybox", a, h)
		}
	}
	tests := []struct {
		name string
		typ  byte
		mode int64
		data string
	}{
		{"etc/passwd", tar.TypeReg, 0o644, "root:x:0:0:root:/root:/bin/sh\n"},
		{"etc/group", tar.TypeReg, 0o644, "root:x:0:\n"},
		{"tmp/", tar.TypeDir, 0o1777, ""},
		{"proc/", tar.TypeDir, 0o555, ""},
	}
	for _, tc := range tests {
		h := hdrs[tc.name]
		if h == nil || h.Typeflag != tc.typ || h.Mode != tc.mode || string(files[tc.name]) != tc.data {
			t.Errorf("%s: header %+v content %q; want type %c mode %o content %q", tc.name, h, files[tc.name], tc.typ, tc.mode, tc.data)
		}
	}
	again, err := BusyboxRootfsTar(path)
	if err != nil || !bytes.Equal(again, layer) {
		t.Fatalf("rootfs tarball is not reproducible (err %v)", err)
	}
}

func TestBusyboxRootfsTarMissingBinary(t *testing.T) {
	if _, err := BusyboxRootfsTar(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("BusyboxRootfsTar of a missing busybox succeeded")
	}
}

// TestOCIArchive checks the layout the way an importer walks it: index ->
// manifest -> config and layer, every blob matching its digest and size.
func TestOCIArchive(t *testing.T) {
	path, _ := fakeBusybox(t)
	layer, err := BusyboxRootfsTar(path)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := OCIArchive(layer, "latest")
	if err != nil {
		t.Fatal(err)
	}
	_, files := readTar(t, archive)
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(files[ocispec.ImageLayoutFile], &layout); err != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Fatalf("oci-layout = %q (%v)", files[ocispec.ImageLayoutFile], err)
	}
	blob := func(d ocispec.Descriptor) []byte {
		t.Helper()
		if err := d.Digest.Validate(); err != nil {
			t.Fatalf("descriptor digest %q: %v", d.Digest, err)
		}
		b, ok := files["blobs/sha256/"+d.Digest.Encoded()]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s does not match its descriptor (size %d vs %d)", d.Digest, len(b), d.Size)
		}
		return b
	}
	var index ocispec.Index
	if err := json.Unmarshal(files[ocispec.ImageIndexFile], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if index.SchemaVersion != 2 || len(index.Manifests) != 1 {
		t.Fatalf("index = %+v, want schema 2 with one manifest", index)
	}
	md := index.Manifests[0]
	if md.MediaType != ocispec.MediaTypeImageManifest || md.Annotations[ocispec.AnnotationRefName] != "latest" {
		t.Fatalf("manifest descriptor = %+v, want an image manifest named latest", md)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(blob(md), &manifest); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayer || !bytes.Equal(blob(manifest.Layers[0]), layer) {
		t.Fatalf("manifest layers = %+v, want the one uncompressed rootfs layer", manifest.Layers)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(manifest.Config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.OS != "linux" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(layer) {
		t.Fatalf("config = %+v, want linux with the layer's diff id", cfg)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/tmp/plain", "/tmp/plain"},
		{`/tmp/with\040space`, "/tmp/with space"},
		{`/tmp/tab\011and\134slash`, "/tmp/tab\tand\\slash"},
		{`/tmp/trailing\04`, `/tmp/trailing\04`},
		{`/tmp/notoctal\9xx`, `/tmp/notoctal\9xx`},
	}
	for _, tc := range tests {
		if got := unescapeMountPath(tc.in); got != tc.want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
