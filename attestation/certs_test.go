package attestation_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func TestLoadCertificates(t *testing.T) {
	dir := t.TempDir()
	platform, err := sim.LoadOrCreatePlatform(filepath.Join(dir, "platform-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	der := filepath.Join(dir, "platform.der")
	os.WriteFile(der, platform.Certificate().Raw, 0o644)
	pemFile := filepath.Join(dir, "platform.pem")
	os.WriteFile(pemFile, platform.CertificatePEM(), 0o644)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("junk"), 0o644)
	certs, err := attestation.LoadCertificates([]string{der, pemFile, filepath.Join(testdata.Attestation(t), "roots", "amd_ask_ark_milan.pem")})
	if err != nil || len(certs) != 4 {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
	for _, bad := range []string{junk, filepath.Join(dir, "missing")} {
		if _, err := attestation.LoadCertificates([]string{bad}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	// A CA file must hold a certificate: an empty pool would trust nothing by accident, and a key
	// is not a certificate.
	key := filepath.Join(dir, "platform-key.pem")
	for _, bad := range []string{key, junk} {
		if _, err := attestation.LoadCertPool(bad); err == nil {
			t.Errorf("LoadCertPool(%s) accepted", bad)
		}
	}
	if _, err := attestation.LoadCertPool(pemFile); err != nil {
		t.Errorf("LoadCertPool: %v", err)
	}
}
