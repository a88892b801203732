package harness

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageCopier is the program the image encryption tests run as `skopeo copy`: $INCLAVARE_SKOPEO
// when set (a skopeo whose ocicrypt has key providers, 1.1 or later), else
// tests/imagecrypt/imgcopy built once per test binary: Debian 12's skopeo 1.9.3 is built against
// ocicrypt 1.0.3 and refuses `provider:` keys, and no newer skopeo can be installed here. imgcopy
// takes skopeo's command line and runs the libraries skopeo runs (containers/image's copy and
// ocicrypt, at the versions its go.mod pins).
func ImageCopier(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("INCLAVARE_SKOPEO"); p != "" {
		return p
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	const key = "imgcopy"
	if p, ok := buildCache[key]; ok {
		return p
	}
	dir, err := BinaryTempDir("harness-build")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "imgcopy")
	// containers_image_openpgp: signature checks in Go, not through libgpgme (there are none
	// here anyway: the policy accepts anything).
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "containers_image_openpgp", "-o", out, ".")
	cmd.Dir = filepath.Join(RepoRoot(t), "tests", "imagecrypt", "imgcopy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tests/imagecrypt/imgcopy: %v\n%s", err, b)
	}
	buildCache[key] = out
	return out
}

// KeyProviderConfig writes an ocicrypt key provider configuration naming verdictd's key provider
// at addr ({"key-providers": {"verdictd": {"grpc": addr}}}) and returns its path, for
// OCICRYPT_KEYPROVIDER_CONFIG.
func KeyProviderConfig(t testing.TB, addr string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"key-providers": map[string]any{"verdictd": map[string]string{"grpc": addr}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ocicrypt.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// SkopeoCopy runs `skopeo --insecure-policy copy --quiet ARGS` (ImageCopier) with the ocicrypt key
// provider configuration config (no signature policy: the images are the test's own) and returns
// its combined output and error.
func SkopeoCopy(t testing.TB, config string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ImageCopier(t), append([]string{"--insecure-policy", "copy", "--quiet"}, args...)...)
	cmd.Env = append(os.Environ(), "OCICRYPT_KEYPROVIDER_CONFIG="+config, "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// OCILayoutManifest reads the manifest of the only image in the OCI image layout dir.
func OCILayoutManifest(t testing.TB, dir string) ocispec.Manifest {
	t.Helper()
	var index ocispec.Index
	readJSON(t, filepath.Join(dir, ocispec.ImageIndexFile), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%s: %d manifests, want 1", dir, len(index.Manifests))
	}
	var m ocispec.Manifest
	readJSON(t, OCIBlobPath(dir, index.Manifests[0].Digest), &m)
	return m
}

// OCIBlobPath is the path of blob d in the OCI image layout dir.
func OCIBlobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// IsEncryptedLayer says whether an OCI media type is an ocicrypt-encrypted layer.
func IsEncryptedLayer(mediaType string) bool { return strings.HasSuffix(mediaType, "+encrypted") }
