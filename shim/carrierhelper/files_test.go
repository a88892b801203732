package carrierhelper

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// TestCheckFiles: what only parsing finds (the shim's own check looks at PEM structure).
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	w := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := w("ec.pem", pemOf("EC PRIVATE KEY", der))
	corrupt := w("corrupt.pem", pemOf("EC PRIVATE KEY", []byte("not DER")))
	trust := w("trust.pem", pemOf("PUBLIC KEY", spki))
	badTrust := w("badtrust.pem", pemOf("PUBLIC KEY", []byte("not DER")))
	ca := testpki.NewCA(t, "signing service CA")
	clientCert, clientKey := ca.Client(t, "shim").Write(t, dir)
	caFile := ca.WriteCA(t, dir)
	badCA := w("badca.pem", pemOf("CERTIFICATE", []byte("not DER")))
	svc := func(cert, key, caCert string) *config.SigningService {
		return &config.SigningService{URL: "https://s", ClientCert: cert, ClientKey: key, CACert: caCert, Timeout: config.Duration(time.Second)}
	}
	tests := []struct {
		name    string
		c       config.Config
		wantErr string
	}{
		{"nothing to check", config.Config{}, ""},
		{"EC key", config.Config{Signing: config.Signing{KeyFile: ecPEM}}, ""},
		{"corrupt key", config.Config{Signing: config.Signing{KeyFile: corrupt}}, "signing.key_file: " + corrupt + ": parse EC PRIVATE KEY"},
		{"client pair and CA", config.Config{Signing: config.Signing{Service: svc(clientCert, clientKey, caFile)}}, ""},
		{"mismatched pair", config.Config{Signing: config.Signing{Service: svc(clientCert, ecPEM, "")}}, "client_cert/client_key"},
		{"corrupt CA", config.Config{Signing: config.Signing{Service: svc(clientCert, clientKey, badCA)}}, "signing.service.ca_cert: " + badCA + ": certificate 1"},
		{"trusted key", config.Config{Rune: config.Rune{ManifestTrust: trust}}, ""},
		{"corrupt trusted key", config.Config{Rune: config.Rune{ManifestTrust: badTrust}}, "rune.manifest_trust: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFiles(&tc.c)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("CheckFiles: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("CheckFiles error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
