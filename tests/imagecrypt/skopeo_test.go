package imagecrypt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/layerkey"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/verdictd"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

const kid = "tenant/key/image"

// broker starts bin/verdictd with the KEK at kid and the key provider on listen.
func broker(t *testing.T, kek []byte, listen string, flags ...string) *verdictdtest.Process {
	t.Helper()
	platform, _, m := simtest.Enclave(t, "app", "native")
	return harness.Broker(t, verdictdtest.ProcessOptions{SimRootPEM: platform.CertificatePEM(), Policy: harness.SimPolicy(m),
		Resources: map[string][]byte{kid: kek}, Flags: append([]string{"--keyprovider-listen", listen}, flags...)})
}

// TestSkopeoEncryptDecrypt: the tenant encrypts an image with skopeo and verdictd's key provider;
// every layer is encrypted, its key wrapped (layerkey) under the KEK named by the key id; a broker
// without --keyprovider-allow-unwrap refuses to decrypt it, one with the flag (on a unix socket)
// gives back the original layers.
func TestSkopeoEncryptDecrypt(t *testing.T) {
	kek := make([]byte, layerkey.KEKSize)
	rand.Read(kek)
	marker := make([]byte, 32)
	rand.Read(marker)
	markerHex := []byte(hex.EncodeToString(marker))
	src, layerDigest := BusyboxArchive(t, map[string][]byte{"app/secret.txt": markerHex})

	b := broker(t, kek, "127.0.0.1:0")
	cfg := harness.KeyProviderConfig(t, b.KeyProvider)
	enc := filepath.Join(t.TempDir(), "encrypted")
	if out, err := harness.SkopeoCopy(t, cfg, "--encryption-key", "provider:verdictd:"+kid, "oci-archive:"+src, "oci:"+enc+":latest"); err != nil {
		t.Fatalf("encrypt: %v\n%s\n%s", err, out, b.Log())
	}
	m := harness.OCILayoutManifest(t, enc)
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers, want 1", len(m.Layers))
	}
	for _, l := range m.Layers {
		if !harness.IsEncryptedLayer(l.MediaType) {
			t.Errorf("layer %s has media type %s, not +encrypted", l.Digest, l.MediaType)
		}
		wrapped, err := base64.StdEncoding.DecodeString(l.Annotations[verdictd.AnnotationName])
		if err != nil {
			t.Fatalf("annotation %s of %s: %v", verdictd.AnnotationName, l.Digest, err)
		}
		w, err := layerkey.Parse(wrapped)
		if err != nil || w.KID != kid {
			t.Fatalf("annotation of %s is not a layerkey wrapped key for %s: %v %s", l.Digest, kid, err, wrapped)
		}
		optsData, err := w.Unwrap(kek)
		if err != nil {
			t.Fatalf("the wrapped key does not unwrap with the KEK: %v", err)
		}
		var o struct{ Symkey []byte }
		if err := json.Unmarshal(optsData, &o); err != nil || len(o.Symkey) != 32 {
			t.Fatalf("unwrapped optsdata is not ocicrypt's (a 32-byte symkey): %v %d", err, len(o.Symkey))
		}
		blob, err := os.ReadFile(harness.OCIBlobPath(enc, l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(blob, markerHex) || bytes.Contains(gunzipOrNil(blob), markerHex) {
			t.Fatalf("the encrypted layer holds the plaintext")
		}
	}
	for _, want := range []string{`"msg":"wrapped"`, `"kid":"` + kid + `"`, `"remote":"tcp:127.0.0.1:`} {
		if !strings.Contains(b.Log(), want) {
			t.Errorf("verdictd's log lacks %s:\n%s", want, b.Log())
		}
	}

	// The default broker refuses to unwrap (tests/security/keyprovider_test.go has the attack).
	refused := filepath.Join(t.TempDir(), "refused")
	out, err := harness.SkopeoCopy(t, cfg, "--decryption-key", "provider:verdictd", "oci:"+enc+":latest", "oci:"+refused+":latest")
	if err == nil || !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, verdictd.ErrUnwrapRefused.Error()) {
		t.Fatalf("decryption through a default verdictd: %v\n%s", err, out)
	}

	// The tenant's own machine: a broker with --keyprovider-allow-unwrap, on a unix socket.
	sock := filepath.Join(t.TempDir(), "kp.sock")
	b2 := broker(t, kek, "unix://"+sock, "--keyprovider-allow-unwrap")
	if b2.KeyProvider != "unix://"+sock {
		t.Fatalf("key provider at %q, want unix://%s", b2.KeyProvider, sock)
	}
	if !strings.Contains(b2.Log(), `"msg":"--keyprovider-allow-unwrap`) {
		t.Errorf("no warning for --keyprovider-allow-unwrap at start:\n%s", b2.Log())
	}
	dec := filepath.Join(t.TempDir(), "decrypted")
	if out, err := harness.SkopeoCopy(t, harness.KeyProviderConfig(t, b2.KeyProvider), "--decryption-key", "provider:verdictd", "oci:"+enc+":latest", "oci:"+dec+":latest"); err != nil {
		t.Fatalf("decrypt: %v\n%s\n%s", err, out, b2.Log())
	}
	dm := harness.OCILayoutManifest(t, dec)
	var cfgBlob ocispec.Image
	readJSON(t, harness.OCIBlobPath(dec, dm.Config.Digest), &cfgBlob)
	if len(dm.Layers) != 1 || len(cfgBlob.RootFS.DiffIDs) != 1 || cfgBlob.RootFS.DiffIDs[0] != layerDigest {
		t.Fatalf("decrypted image: layers %+v, diff_ids %v, want the original layer %s", dm.Layers, cfgBlob.RootFS.DiffIDs, layerDigest)
	}
	l := dm.Layers[0]
	if harness.IsEncryptedLayer(l.MediaType) || l.Annotations[verdictd.AnnotationName] != "" {
		t.Fatalf("decrypted layer is still encrypted: %+v", l)
	}
	blob, err := os.ReadFile(harness.OCIBlobPath(dec, l.Digest))
	if err != nil {
		t.Fatal(err)
	}
	plain := blob
	if strings.HasSuffix(l.MediaType, "+gzip") {
		plain = gunzipOrNil(blob)
	}
	if digest.FromBytes(plain) != layerDigest {
		t.Fatalf("decrypted layer (%s) is not the original %s", l.MediaType, layerDigest)
	}
	if got := tarFile(t, plain, "app/secret.txt"); !bytes.Equal(got, markerHex) {
		t.Fatalf("app/secret.txt in the decrypted layer: %q", got)
	}
	for _, want := range []string{`"msg":"unwrapped"`, `"kid":"` + kid + `"`, `"step":"keyunwrap"`} {
		if !strings.Contains(b2.Log(), want) {
			t.Errorf("verdictd's log lacks %s:\n%s", want, b2.Log())
		}
	}
}

func gunzipOrNil(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil
	}
	return out
}

func tarFile(t *testing.T, layer []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the layer", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
