package security

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocikp "github.com/containers/ocicrypt/keywrap/keyprovider"
	kppb "github.com/containers/ocicrypt/utils/keyprovider"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/layerkey"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/tests/imagecrypt"
	"github.com/inclavare-containers/inclavare-go/verdictd"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

// Attacks on verdictd's ocicrypt key provider (--keyprovider-listen), run against bin/verdictd
// with skopeo's encryption path (harness.ImageCopier) and raw gRPC calls. The tenant's image layers
// are encrypted with keys wrapped under a KEK only the broker holds; each test shows that the
// layer key or a KEK does not come out, with the reason.

const kpKID = "tenant/key/image"

type kpBroker struct {
	*verdictdtest.Process
	kek    []byte
	config string // OCICRYPT_KEYPROVIDER_CONFIG naming this broker
}

// kpStart starts bin/verdictd with a 32-byte KEK at kpKID, further resources, and the key
// provider on a free loopback port.
func kpStart(t *testing.T, resources map[string][]byte, flags ...string) *kpBroker {
	t.Helper()
	kek := make([]byte, layerkey.KEKSize)
	rand.Read(kek)
	res := map[string][]byte{kpKID: kek}
	for k, v := range resources {
		res[k] = v
	}
	platform, _, m := simtest.Enclave(t, "app", "native")
	p := harness.Broker(t, verdictdtest.ProcessOptions{SimRootPEM: platform.CertificatePEM(), Policy: harness.SimPolicy(m),
		Resources: res, Flags: append([]string{"--keyprovider-listen", "127.0.0.1:0"}, flags...)})
	return &kpBroker{Process: p, kek: kek, config: harness.KeyProviderConfig(t, p.KeyProvider)}
}

// kpEncrypted is the tenant's image encrypted through b under kpKID, and the plaintext marker
// (hex) its layer holds.
func kpEncrypted(t *testing.T, b *kpBroker) (layout string, marker []byte) {
	t.Helper()
	m := make([]byte, 32)
	rand.Read(m)
	marker = []byte(hex.EncodeToString(m))
	src, _ := imagecrypt.BusyboxArchive(t, map[string][]byte{"app/secret.txt": marker})
	layout = filepath.Join(t.TempDir(), "encrypted")
	if out, err := harness.SkopeoCopy(t, b.config, "--encryption-key", "provider:verdictd:"+kpKID, "oci-archive:"+src, "oci:"+layout+":latest"); err != nil {
		t.Fatalf("encrypt: %v\n%s\n%s", err, out, b.Log())
	}
	return layout, marker
}

// kpDecryptFails runs skopeo's decryption of layout through config and checks that it fails
// with each of want in its output, and that the layer's plaintext is nowhere in the destination.
func kpDecryptFails(t *testing.T, config, layout string, marker []byte, want ...string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "decrypted")
	out, err := harness.SkopeoCopy(t, config, "--decryption-key", "provider:verdictd", "oci:"+layout+":latest", "oci:"+dst+":latest")
	if err == nil {
		t.Fatalf("decryption succeeded:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("decryption failed without %q:\n%s", w, out)
		}
	}
	harness.AssertBytesNowhere(t, marker, []string{dst})
}

// kpWrapped is the wrapped key of the (only) layer of layout.
func kpWrapped(t *testing.T, layout string) []byte {
	t.Helper()
	m := harness.OCILayoutManifest(t, layout)
	w, err := base64.StdEncoding.DecodeString(m.Layers[0].Annotations[verdictd.AnnotationName])
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// kpSetWrapped replaces the wrapped key of layout's layer: the manifest is rewritten under its new
// digest and the index made to point to it, so the image is consistent apart from the key.
func kpSetWrapped(t *testing.T, layout string, wrapped []byte) {
	t.Helper()
	var index ocispec.Index
	kpReadJSON(t, filepath.Join(layout, ocispec.ImageIndexFile), &index)
	m := harness.OCILayoutManifest(t, layout)
	m.Layers[0].Annotations[verdictd.AnnotationName] = base64.StdEncoding.EncodeToString(wrapped)
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(mb)
	if err := os.WriteFile(harness.OCIBlobPath(layout, d), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	index.Manifests[0].Digest, index.Manifests[0].Size = d, int64(len(mb))
	ib, _ := json.Marshal(index)
	if err := os.WriteFile(filepath.Join(layout, ocispec.ImageIndexFile), ib, 0o644); err != nil {
		t.Fatal(err)
	}
}

func kpReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// kpCall sends one raw key provider request to addr, as any program reaching the endpoint can.
func kpCall(t *testing.T, addr string, unwrap bool, in ocikp.KeyProviderKeyWrapProtocolInput) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	b, _ := json.Marshal(in)
	c := kppb.NewKeyProviderServiceClient(cc)
	req := &kppb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: b}
	if unwrap {
		_, err = c.UnWrapKey(context.Background(), req)
	} else {
		_, err = c.WrapKey(context.Background(), req)
	}
	return err
}

func kpWantStatus(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if s, ok := status.FromError(err); !ok || s.Code() != code || !strings.Contains(s.Message(), text) {
		t.Errorf("got %v, want %s with %q", err, code, text)
	}
}

// TestKeyProviderUnwrapRefusedByDefault. Party: anyone who reaches the key provider endpoint —
// another process on the tenant's machine, or the node operator if the tenant ran verdictd where
// the operator can connect. Attack: ask verdictd to unwrap the layer key of the tenant's
// encrypted image, with skopeo's --decryption-key provider:verdictd and with a raw UnWrapKey
// call. Expected: PermissionDenied "layer keys are unwrapped only inside attested enclaves…"
// (verdictd unwraps only with --keyprovider-allow-unwrap), the refusal logged, the layer's
// plaintext nowhere in skopeo's destination.
func TestKeyProviderUnwrapRefusedByDefault(t *testing.T) {
	b := kpStart(t, nil)
	layout, marker := kpEncrypted(t, b)
	kpDecryptFails(t, b.config, layout, marker, "PermissionDenied", verdictd.ErrUnwrapRefused.Error())
	err := kpCall(t, b.KeyProvider, true, ocikp.KeyProviderKeyWrapProtocolInput{Operation: ocikp.OpKeyUnwrap,
		KeyUnwrapParams: ocikp.KeyUnwrapParams{Annotation: kpWrapped(t, layout)}})
	kpWantStatus(t, err, codes.PermissionDenied, verdictd.ErrUnwrapRefused.Error())
	if n := strings.Count(b.Log(), `"msg":"refused","step":"keyunwrap"`); n < 2 {
		t.Errorf("%d unwrap refusals logged, want 2:\n%s", n, b.Log())
	}
	if strings.Contains(b.Log(), `"msg":"unwrapped"`) {
		t.Errorf("verdictd unwrapped:\n%s", b.Log())
	}
}

// TestKeyProviderListenNotLoopbackRefused. Party: the node operator or a network attacker, if the
// plaintext gRPC endpoint were reachable from the network (it wraps with the tenant's KEKs for
// whoever connects, and with --keyprovider-allow-unwrap unwraps). Attack: the tenant (by mistake,
// or a deployment template) asks verdictd to listen on every interface or on a name. Expected:
// usage error (exit 2) naming the problem, before anything listens.
func TestKeyProviderListenNotLoopbackRefused(t *testing.T) {
	platform, _, m := simtest.Enclave(t, "app", "native")
	bin := os.Getenv("VERDICTD_BINARY")
	if bin == "" {
		bin = filepath.Join(harness.RepoRoot(t), "bin", "verdictd")
	}
	for addr, want := range map[string]string{
		"0.0.0.0:0":               "0.0.0.0 is not a loopback address",
		"[::]:0":                  ":: is not a loopback address",
		":0":                      `host "" is not an IP address`,
		"localhost:0":             `host "localhost" is not an IP address`,
		"198.18.0.1:0":            "198.18.0.1 is not a loopback address",
		"unix://relative/kp.sock": "unix:///ABSOLUTE/PATH",
	} {
		cmd := verdictdtest.Command(t, verdictdtest.ProcessOptions{Binary: bin, SimRootPEM: platform.CertificatePEM(),
			Policy: harness.SimPolicy(m), Flags: []string{"--keyprovider-listen", addr, "--keyprovider-allow-unwrap"}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--keyprovider-listen") || !strings.Contains(string(out), want) {
			t.Errorf("--keyprovider-listen %s: %v, want exit 2 with %q:\n%s", addr, err, want, out)
		}
		if strings.Contains(string(out), `"msg":"listening"`) {
			t.Errorf("--keyprovider-listen %s: verdictd listened:\n%s", addr, out)
		}
	}
}

// TestKeyProviderTamperedWrappedKeyRefused. Party: whoever can change the encrypted image in a
// registry or on the node (the node operator), against a tenant's verdictd that unwraps
// (--keyprovider-allow-unwrap). Attack: rewrite the layer's wrapped key — point its kid at
// another of the tenant's KEKs, at a resource that does not exist, outside the resource tree, or
// flip its ciphertext — hoping verdictd unwraps under a key of the attacker's choosing or returns
// unauthenticated key material. Expected: each refused with the reason (the kid is authenticated
// by AES-GCM, a missing KEK is never replaced, a path is checked), nothing of the layer decrypted.
func TestKeyProviderTamperedWrappedKeyRefused(t *testing.T) {
	other := make([]byte, layerkey.KEKSize)
	rand.Read(other)
	b := kpStart(t, map[string][]byte{"tenant/key/other": other}, "--keyprovider-allow-unwrap")
	layout, marker := kpEncrypted(t, b)
	good := kpWrapped(t, layout)
	edit := func(mod func(w map[string]any)) []byte {
		var w map[string]any
		if err := json.Unmarshal(good, &w); err != nil {
			t.Fatal(err)
		}
		mod(w)
		out, _ := json.Marshal(w)
		return out
	}
	for name, tc := range map[string]struct {
		wrapped []byte
		want    string
	}{
		"kid moved to another KEK":  {edit(func(w map[string]any) { w["kid"] = "tenant/key/other" }), "does not open with key tenant/key/other"},
		"kid of a missing resource": {edit(func(w map[string]any) { w["kid"] = "tenant/key/absent" }), "no such resource: tenant/key/absent"},
		"kid with traversal":        {edit(func(w map[string]any) { w["kid"] = "tenant/../etc" }), `component ".." starts with '.'`},
		"ct flipped": {edit(func(w map[string]any) {
			ct, _ := base64.StdEncoding.DecodeString(w["ct"].(string))
			ct[len(ct)/2] ^= 1
			w["ct"] = base64.StdEncoding.EncodeToString(ct)
		}), "does not open with key " + kpKID},
	} {
		t.Run(name, func(t *testing.T) {
			kpSetWrapped(t, layout, tc.wrapped)
			kpDecryptFails(t, b.config, layout, marker, tc.want)
		})
	}
	if strings.Contains(b.Log(), `"msg":"unwrapped"`) {
		t.Errorf("verdictd unwrapped a changed key:\n%s", b.Log())
	}
	// The untouched key still opens: the refusals were about the changes.
	kpSetWrapped(t, layout, good)
	dst := filepath.Join(t.TempDir(), "decrypted")
	if out, err := harness.SkopeoCopy(t, b.config, "--decryption-key", "provider:verdictd", "oci:"+layout+":latest", "oci:"+dst+":latest"); err != nil {
		t.Fatalf("the untouched image: %v\n%s", err, out)
	}
}

// TestKeyProviderKEKWrongSizeRefused. Party: none hostile — a tenant's mistake that would
// weaken every layer key: a KEK resource that is not a raw 32-byte AES-256 key (a hex or base64
// text of one, a 16-byte key, a password). Attack surface: WrapKey would otherwise derive, pad
// or truncate. Expected: skopeo's encryption fails with the resource named and its size, and no
// image is written.
func TestKeyProviderKEKWrongSizeRefused(t *testing.T) {
	hexKEK := []byte(hex.EncodeToString(make([]byte, 32)))
	b := kpStart(t, map[string][]byte{"tenant/key/hex": hexKEK, "tenant/key/aes128": make([]byte, 16)}, "--keyprovider-allow-unwrap")
	src, _ := imagecrypt.BusyboxArchive(t, nil)
	for id, size := range map[string]string{"tenant/key/hex": "64", "tenant/key/aes128": "16"} {
		dst := filepath.Join(t.TempDir(), "encrypted")
		out, err := harness.SkopeoCopy(t, b.config, "--encryption-key", "provider:verdictd:"+id, "oci-archive:"+src, "oci:"+dst+":latest")
		if want := "key-encryption key " + id + " is " + size + " bytes, want exactly 32"; err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: %v, want %q:\n%s", id, err, want, out)
		}
		if _, err := os.Stat(filepath.Join(dst, ocispec.ImageIndexFile)); err == nil {
			var index ocispec.Index
			kpReadJSON(t, filepath.Join(dst, ocispec.ImageIndexFile), &index)
			if len(index.Manifests) != 0 {
				t.Errorf("%s: an image was written: %+v", id, index)
			}
		}
	}
	if strings.Contains(b.Log(), `"msg":"wrapped"`) {
		t.Errorf("verdictd wrapped with a wrong-size KEK:\n%s", b.Log())
	}
}

// TestKeyProviderKIDTraversalRefused. Party: anyone reaching the endpoint. Attack: name as the
// KEK a file outside --resources — by "..", an absolute path, or a symlink inside the resource
// tree to a file of known content outside it — so that layer keys are wrapped under a key the
// attacker knows (or the wrap becomes an oracle on other files). Expected: refused with the reason
// (the resource path rules of the KBS resources: three plain components, openat2 beneath the
// directory, no symlinks), nothing wrapped.
func TestKeyProviderKIDTraversalRefused(t *testing.T) {
	known := bytes.Repeat([]byte{'k'}, layerkey.KEKSize)
	outside := filepath.Join(t.TempDir(), "known-kek")
	if err := os.WriteFile(outside, known, 0o600); err != nil {
		t.Fatal(err)
	}
	b := kpStart(t, nil)
	if err := os.Symlink(outside, filepath.Join(b.Resource, "tenant", "key", "link")); err != nil {
		t.Fatal(err)
	}
	src, _ := imagecrypt.BusyboxArchive(t, nil)
	for kid, want := range map[string]string{
		"../../known-kek":      `starts with '.'`,
		"tenant/../etc":        `starts with '.'`,
		"/tmp/known-kek":       `component "" must be 1 to 255 bytes`,
		"tenant/key/link":      "crosses a symbolic link",
		"tenant/key/image/sub": "want <repository>/<type>/<tag>",
	} {
		dst := filepath.Join(t.TempDir(), "encrypted")
		out, err := harness.SkopeoCopy(t, b.config, "--encryption-key", "provider:verdictd:"+kid, "oci-archive:"+src, "oci:"+dst+":latest")
		if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, want) {
			t.Errorf("key id %s: %v, want InvalidArgument with %q:\n%s", kid, err, want, out)
		}
	}
	if strings.Contains(b.Log(), `"msg":"wrapped"`) {
		t.Errorf("verdictd wrapped with a key outside its resources:\n%s", b.Log())
	}
}
