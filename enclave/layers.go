package enclave

import (
	"fmt"
	"path"
	"strings"
)

// Encrypted image layers, unpacked inside the enclave after attestation (docs/encrypted-layers.md):
// env first, removed from the workload's environment, else the annotation.
const (
	EnvLayers        = "ENCLAVE_LAYERS"
	AnnotationLayers = "enclave.layers"
)

// Layer is one encrypted image layer kept, still encrypted, in the container's rootfs, and the
// directory its files are unpacked into inside the enclave.
type Layer struct {
	// Dir holds the layer as an image holds it: blob (the encrypted bytes) and descriptor.json
	// (its OCI descriptor, with the wrapped key and cipher options in its annotations).
	Dir string `json:"dir"`
	// Target is the directory, a private in-memory file system, that receives the layer's files;
	// every entry of the layer must lie under it (entries are paths from the root, as in any layer).
	Target string `json:"target"`
}

func parseLayers(s string) ([]Layer, error) {
	var out []Layer
	for _, item := range strings.Split(s, ",") {
		dir, target, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("%s item %q: want <layer directory>:<target directory>", EnvLayers, item)
		}
		out = append(out, Layer{Dir: dir, Target: target})
	}
	return out, nil
}

// validateLayers checks the layers against each other and the secrets' directories.
func (k *KBS) validateLayers() error {
	secretDirs := map[string]bool{}
	for _, d := range k.SecretDirs() {
		secretDirs[d] = true
	}
	var targets []string
	for _, l := range k.Layers {
		for _, p := range []string{l.Dir, l.Target} {
			if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
				return fmt.Errorf("%s: %q must be an absolute, clean path other than /", EnvLayers, p)
			}
		}
		if err := checkPrivateDir(l.Target); err != nil {
			return fmt.Errorf("%s: target %w", EnvLayers, err)
		}
		for _, d := range k.SecretDirs() {
			if PathWithin(d, l.Target) || PathWithin(l.Target, d) {
				return fmt.Errorf("%s: target %s and the secrets directory %s overlap", EnvLayers, l.Target, d)
			}
		}
		for _, t := range targets {
			if PathWithin(t, l.Target) || PathWithin(l.Target, t) {
				return fmt.Errorf("%s: targets %s and %s overlap", EnvLayers, t, l.Target)
			}
		}
		targets = append(targets, l.Target)
	}
	for _, l := range k.Layers {
		for _, t := range targets {
			if PathWithin(t, l.Dir) {
				return fmt.Errorf("%s: layer directory %s is under the target %s, whose in-memory file system would hide it", EnvLayers, l.Dir, t)
			}
		}
		for d := range secretDirs {
			if PathWithin(d, l.Dir) {
				return fmt.Errorf("%s: layer directory %s is under the secrets directory %s", EnvLayers, l.Dir, d)
			}
		}
	}
	return nil
}

// LayerTarget returns the target of the layer whose files include p (absolute, clean), if any.
func LayerTarget(targets []string, p string) (string, bool) {
	for _, t := range targets {
		if PathWithin(t, p) {
			return t, true
		}
	}
	return "", false
}

// LayerMeasured is what the measurement covers of an encrypted layer: the SHA-256 of its encrypted
// blob (which, through the layer's HMAC under the key only the tenant's wrap releases, pins its
// plaintext) and where it is unpacked.
func LayerMeasured(blobSHA256, target string) string { return blobSHA256 + ":" + target }

// CodeInLayer returns p.Path when it lies under the target of one of p.Layers: code that exists
// only once the enclave unpacked the layer.
func (p *Process) CodeInLayer() (string, bool) {
	for _, l := range p.Layers {
		if _, target, ok := strings.Cut(l, ":"); ok && PathWithin(target, path.Clean(p.Path)) && path.IsAbs(p.Path) {
			return path.Clean(p.Path), true
		}
	}
	return "", false
}

// PathWithin reports whether p is dir or lies beneath it; both are clean absolute paths.
func PathWithin(dir, p string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// InLayer returns name, cleaned, when it is an absolute path under the target of one of the
// enclave's encrypted layers: a program that exists only once the enclave unpacked the layer, so
// it is neither looked up in PATH nor looked for before (it must be named by its absolute path).
func (s *Settings) InLayer(name string) (string, bool) {
	if s == nil || s.KBS == nil || !path.IsAbs(name) {
		return "", false
	}
	var targets []string
	for _, l := range s.KBS.Layers {
		targets = append(targets, l.Target)
	}
	if _, ok := LayerTarget(targets, path.Clean(name)); ok {
		return path.Clean(name), true
	}
	return "", false
}

// MeasureLayers is what the measurement covers of the encrypted layers (LayerMeasured of each
// blob's digest), with digests giving the hex SHA-256 of each layer directory's blob
// (imagelayer.BlobDigests in a root): PID 1 measures in the container, prepare in the rootfs on
// the host, with this one function.
func MeasureLayers(layers []Layer, digests func(dirs []string) ([]string, error)) ([]string, error) {
	dirs := make([]string, len(layers))
	for i, l := range layers {
		dirs[i] = l.Dir
	}
	sums, err := digests(dirs)
	if err != nil {
		return nil, err
	}
	if len(sums) != len(layers) {
		return nil, fmt.Errorf("%d digests for %d encrypted layers", len(sums), len(layers))
	}
	for i, l := range layers {
		sums[i] = LayerMeasured(sums[i], l.Target)
	}
	return sums, nil
}
