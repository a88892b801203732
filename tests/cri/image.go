package cri

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch keeps image bytes, and so digests, the same across runs.
var epoch = time.Unix(0, 0).UTC()

// addFiles returns layer (an uncompressed tar) with executable files added, and the
// directories holding them.
func addFiles(layer []byte, files map[string][]byte) ([]byte, error) {
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
	for name, data := range files {
		for dir := pathDir(name); dir != "" && !dirs[dir]; dir = pathDir(dir) {
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, fmt.Errorf("write dir %s: %w", dir, err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: epoch}
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

func pathDir(name string) string {
	for i := len(name) - 1; i > 0; i-- {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return ""
}

// ociArchive wraps one uncompressed layer into a tarred OCI image layout whose manifest
// carries the reference name tag (what `ctr images import --base-name` keys on) and whose
// config runs entrypoint.
func ociArchive(layer []byte, tag string, entrypoint []string) ([]byte, error) {
	layerDigest := digest.FromBytes(layer)
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/bin"},
			Entrypoint: entrypoint,
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDigest}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal image config: %w", err)
	}
	manifest := ocispec.Manifest{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    describe(ocispec.MediaTypeImageConfig, cfgJSON),
		Layers:    []ocispec.Descriptor{describe(ocispec.MediaTypeImageLayer, layer)},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, fmt.Errorf("marshal manifest: %w", err)
	}
	manifestDesc := describe(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	manifestDesc.Platform = &cfg.Platform
	indexJSON, err := json.Marshal(ocispec.Index{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
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
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("write dir %s: %w", dir, err)
		}
	}
	for _, e := range []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutJSON},
		{"blobs/sha256/" + layerDigest.Encoded(), layer},
		{"blobs/sha256/" + manifest.Config.Digest.Encoded(), cfgJSON},
		{"blobs/sha256/" + manifestDesc.Digest.Encoded(), manifestJSON},
		{ocispec.ImageIndexFile, indexJSON},
	} {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write header %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("write %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close oci archive: %w", err)
	}
	return buf.Bytes(), nil
}

func describe(mediaType string, blob []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
}
