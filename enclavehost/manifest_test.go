package enclavehost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
)

const testMeasurement = "28eb682cb78535163333af841b2e90e4ec720a51d585474cc5dab48567b6fb6e"

var testSettings = &enclave.Settings{Type: attestation.Sim, RuntimePath: "builtin:wasm", LogLevel: "info"}

var testEntrypoint = enclavemanifest.Entrypoint{Path: "/app/x.wasm", Args: []string{"x.wasm"}, Env: []string{"PATH=/bin"}, Cwd: "/"}

// signedBundle is a bundle whose manifest signer signed, and the trust file of signer's key.
func signedBundle(t *testing.T, signer enclavemanifest.Signer, key *ecdsa.PrivateKey) (bundle, trustFile string) {
	t.Helper()
	bundle = t.TempDir()
	m := enclavemanifest.Manifest{Measurement: testMeasurement, Enclave: enclavemanifest.EnclaveFrom(testSettings), Entrypoint: testEntrypoint}
	data, err := enclavemanifest.Sign(context.Background(), m, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := enclavemanifest.WriteToBundle(bundle, data); err != nil {
		t.Fatal(err)
	}
	if key != nil {
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		trustFile = filepath.Join(t.TempDir(), "trust.pem")
		os.WriteFile(trustFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	}
	return bundle, trustFile
}

func TestManifestPolicyVerify(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := enclavemanifest.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	bundle, trust := signedBundle(t, signer, key)
	spec := &specs.Spec{}
	empty := t.TempDir()

	if m, err := (ManifestPolicy{}).Verify(empty, spec, testSettings); m != nil || err != nil {
		t.Errorf("no manifest, none required: %v, %v", m, err)
	}
	if _, err := (ManifestPolicy{Require: true}).Verify(empty, spec, testSettings); err == nil || !strings.Contains(err.Error(), "is required (--require-manifest)") {
		t.Errorf("required by flag: %v", err)
	}
	required := &specs.Spec{Annotations: map[string]string{enclavemanifest.AnnotationRequired: "true"}}
	if _, err := (ManifestPolicy{}).Verify(empty, required, testSettings); err == nil || !strings.Contains(err.Error(), "annotation "+enclavemanifest.AnnotationRequired) {
		t.Errorf("required by annotation: %v", err)
	}
	odd := &specs.Spec{Annotations: map[string]string{enclavemanifest.AnnotationRequired: "yes"}}
	if _, err := (ManifestPolicy{}).Verify(empty, odd, testSettings); err == nil || !strings.Contains(err.Error(), "want true or false") {
		t.Errorf("annotation yes: %v", err)
	}
	m, err := (ManifestPolicy{TrustFile: trust, TrustNamed: true}).Verify(bundle, spec, testSettings)
	if err != nil || m.Measurement != testMeasurement {
		t.Fatalf("trusted manifest: %v, %v", m, err)
	}
	if _, err := (ManifestPolicy{TrustFile: trust}).Verify(bundle, spec, nil); err == nil || !strings.Contains(err.Error(), "no enclave settings") {
		t.Errorf("manifest for an ordinary container: %v", err)
	}
	// A missing default trust file trusts no key, and says so; a named one must exist.
	missing := filepath.Join(empty, "none.pem")
	if _, err := (ManifestPolicy{TrustFile: missing}).Verify(bundle, spec, testSettings); err == nil || !strings.Contains(err.Error(), "no trust file") {
		t.Errorf("default trust file missing: %v", err)
	}
	if _, err := (ManifestPolicy{TrustFile: missing, TrustNamed: true}).Verify(bundle, spec, testSettings); err == nil || !strings.Contains(err.Error(), "--manifest-trust") {
		t.Errorf("named trust file missing: %v", err)
	}

	eph, err := enclavemanifest.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	ephBundle, _ := signedBundle(t, eph, nil)
	if _, err := (ManifestPolicy{TrustFile: trust}).Verify(ephBundle, spec, testSettings); !errors.Is(err, enclavemanifest.ErrEphemeralKey) {
		t.Errorf("ephemeral key without AllowEphemeral: %v", err)
	}
	if _, err := (ManifestPolicy{TrustFile: trust, AllowEphemeral: true}).Verify(ephBundle, spec, testSettings); err != nil {
		t.Errorf("ephemeral key with AllowEphemeral: %v", err)
	}
}

func TestMatchManifest(t *testing.T) {
	m := &enclavemanifest.Manifest{Measurement: testMeasurement, Enclave: enclavemanifest.EnclaveFrom(testSettings), Entrypoint: testEntrypoint}
	if err := MatchManifest("/b", nil, testSettings, "other", testEntrypoint); err != nil {
		t.Errorf("no manifest: %v", err)
	}
	if err := MatchManifest("/b", m, testSettings, testMeasurement, testEntrypoint); err != nil {
		t.Errorf("matching: %v", err)
	}
	other := testEntrypoint
	other.Args = []string{"x.wasm", "--evil"}
	otherSettings := *testSettings
	otherSettings.LogLevel = "debug"
	err := MatchManifest("/b", m, &otherSettings, strings.Repeat("0", 64), other)
	var mm *enclavemanifest.MismatchError
	if !errors.As(err, &mm) || len(mm.Mismatches) < 3 {
		t.Fatalf("mismatch: %v", err)
	}
	if !strings.Contains(err.Error(), enclavemanifest.BundlePath("/b")) {
		t.Errorf("mismatch does not name the manifest: %v", err)
	}
}
