package clients

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BusyboxApplets are the commands the test image provides as symlinks to
// /bin/busybox. Shell builtins (trap, pwd, exit) need no link.
var BusyboxApplets = []string{
	"sh", "echo", "sleep", "cat", "true", "false", "id", "ls", "ps",
	"kill", "env", "hostname", "wc", "head",
}

// fixedTime keeps the image bytes reproducible, so the image digest is the
// same across runs.
var fixedTime = time.Unix(0, 0).UTC()

// BusyboxRootfsTar returns an uncompressed tarball of a minimal root
// filesystem: the static busybox binary at /bin/busybox, applet symlinks,
// /etc/passwd and /etc/group with root, and a world-writable /tmp.
func BusyboxRootfsTar(busyboxPath string) ([]byte, error) {
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox binary: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []struct {
		name string
		mode int64
	}{
		{"bin/", 0o755}, {"etc/", 0o755}, {"root/", 0o700}, {"tmp/", 0o1777},
		// Mount points the runtime would otherwise have to create.
		{"dev/", 0o755}, {"proc/", 0o555}, {"sys/", 0o555},
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, ModTime: fixedTime}); err != nil {
			return nil, fmt.Errorf("write dir %s: %w", d.name, err)
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/busybox", 0o755, bin},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"etc/group", 0o644, []byte("root:x:0:\n")},
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: fixedTime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	for _, a := range BusyboxApplets {
		hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: fixedTime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write link %s: %w", a, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close rootfs tar: %w", err)
	}
	return buf.Bytes(), nil
}

// OCIArchive wraps one uncompressed layer into a tarred OCI image layout
// (oci-layout, index.json, blobs/sha256/...) whose single manifest carries
// the reference name refName (for example "latest"), which is what
// `ctr images import --base-name` keys on. The image runs /bin/sh.
func OCIArchive(layer []byte, refName string) ([]byte, error) {
	return OCIArchiveWithConfig(layer, refName, ocispec.ImageConfig{
		Env:        []string{"PATH=/bin"},
		Cmd:        []string{"/bin/sh"},
		WorkingDir: "/",
	})
}

// OCIArchiveWithConfig is OCIArchive with the image configuration config.
func OCIArchiveWithConfig(layer []byte, refName string, config ocispec.ImageConfig) ([]byte, error) {
	layerDigest := digest.FromBytes(layer)
	cfg := ocispec.Image{
		Created: &fixedTime,
		Platform: ocispec.Platform{
			Architecture: runtime.GOARCH,
			OS:           "linux",
		},
		Config: config,
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDigest}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal image config: %w", err)
	}
	manifest := ocispec.Manifest{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    descriptorOf(ocispec.MediaTypeImageConfig, cfgJSON),
		Layers:    []ocispec.Descriptor{descriptorOf(ocispec.MediaTypeImageLayer, layer)},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, fmt.Errorf("marshal manifest: %w", err)
	}
	manifestDesc := descriptorOf(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Annotations = map[string]string{ocispec.AnnotationRefName: refName}
	manifestDesc.Platform = &cfg.Platform
	index := ocispec.Index{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return nil, fmt.Errorf("marshal index: %w", err)
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return nil, fmt.Errorf("marshal oci-layout: %w", err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: fixedTime}); err != nil {
			return nil, fmt.Errorf("write dir %s: %w", dir, err)
		}
	}
	entries := []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutJSON},
		{"blobs/sha256/" + layerDigest.Encoded(), layer},
		{"blobs/sha256/" + manifest.Config.Digest.Encoded(), cfgJSON},
		{"blobs/sha256/" + manifestDesc.Digest.Encoded(), manifestJSON},
		{ocispec.ImageIndexFile, indexJSON},
	}
	for _, e := range entries {
		if err := writeTarFile(tw, e.name, e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close oci archive: %w", err)
	}
	return buf.Bytes(), nil
}

func descriptorOf(mediaType string, blob []byte) ocispec.Descriptor {
	sum := sha256.Sum256(blob)
	return ocispec.Descriptor{
		MediaType: mediaType,
		Digest:    digest.NewDigestFromBytes(digest.SHA256, sum[:]),
		Size:      int64(len(blob)),
	}
}

func writeTarFile(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: fixedTime}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header %s: %w", name, err)
	}
	if _, err := io.Copy(tw, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// WithFiles returns layer (an uncompressed tar; nil for none) with executable files added at
// the given paths, and the directories holding them. Files are added in name order, so the
// same input makes the same bytes.
func WithFiles(layer []byte, files map[string][]byte) ([]byte, error) {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	if layer != nil {
		tr := tar.NewReader(bytes.NewReader(layer))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read layer: %w", err)
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, fmt.Errorf("copy %s: %w", h.Name, err)
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return nil, fmt.Errorf("copy %s: %w", h.Name, err)
			}
		}
	}
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		var parents []string
		for dir := path.Dir(name); dir != "." && dir != "/" && !dirs[dir]; dir = path.Dir(dir) {
			dirs[dir] = true
			parents = append(parents, dir)
		}
		for _, dir := range slices.Backward(parents) {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: fixedTime}); err != nil {
				return nil, fmt.Errorf("write dir %s: %w", dir, err)
			}
		}
		data := files[name]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: fixedTime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return out.Bytes(), nil
}
