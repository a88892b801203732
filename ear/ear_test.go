package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

func token(now time.Time) *Token {
	res := &attestation.Result{TEE: attestation.Sim, Verified: true, Measurements: map[string]string{"measurement": "ab"},
		ReportData: make([]byte, 64), Details: map[string]string{"simulated": "true"}}
	return &Token{Profile: Profile, IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(),
		VerifierID: VerifierID{Developer: Developer, Build: "test"},
		Submods:    map[string]*Appraisal{Submod: {Status: Affirming, AnnotatedEvidence: map[string]any{"sim": Claims(res)}}}}
}

func TestSignVerify(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	for name, key := range map[string]crypto.Signer{"ES256": ec, "RS256": rk} {
		t.Run(name, func(t *testing.T) {
			s, err := token(now).Sign(key)
			if err != nil {
				t.Fatal(err)
			}
			header, _ := base64.RawURLEncoding.DecodeString(strings.Split(s, ".")[0])
			var h map[string]any
			_ = json.Unmarshal(header, &h)
			if h["alg"] != name || h["typ"] != "JWT" || h["jwk"] == nil {
				t.Fatalf("header %s", header)
			}
			got, err := Verify(s, key.Public(), now)
			if err != nil {
				t.Fatal(err)
			}
			if got.Submods[Submod].Status != Affirming || got.Profile != Profile {
				t.Fatalf("%+v", got)
			}
			var claims map[string]any
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(s, ".")[1])
			_ = json.Unmarshal(payload, &claims)
			for _, k := range []string{"eat_profile", "iat", "exp", "ear.verifier-id", "submods"} {
				if claims[k] == nil {
					t.Errorf("claim %s missing: %s", k, payload)
				}
			}
			if _, err := Verify(s, key.Public(), now.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
				t.Errorf("expired token: %v", err)
			}
		})
	}
}

// A token signed by another key verifies with that key only, whatever JWK its header carries.
func TestVerifyNeverTrustsTheEmbeddedKey(t *testing.T) {
	real, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	forged, err := token(now).Sign(attacker)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(forged, &real.PublicKey, now); err == nil {
		t.Fatal("forged token verified")
	}
	good, _ := token(now).Sign(real)
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	if _, err := Verify(none, &real.PublicKey, now); err == nil {
		t.Fatal("alg none verified")
	}
	bad := token(now)
	bad.Submods[Submod].Status = "great"
	if _, err := bad.Sign(real); err == nil {
		t.Fatal("invalid status signed")
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		v, d, s bool
		want    Status
	}{{false, true, true, Contraindicated}, {true, false, false, None}, {true, true, true, Affirming}, {true, true, false, Contraindicated}} {
		if got := StatusOf(tc.v, tc.d, tc.s); got != tc.want {
			t.Errorf("%+v: %s", tc, got)
		}
	}
}

func TestLoadSigningKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pk8, _ := x509.MarshalPKCS8PrivateKey(ec)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, path := range map[string]string{
		"sec1": write("sec1.pem", "EC PRIVATE KEY", sec1), "pkcs8": write("pk8.pem", "PRIVATE KEY", pk8),
		"pkcs1": write("rsa.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)),
	} {
		if _, err := LoadSigningKey(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, path := range map[string]string{
		"P-384": write("p384.pem", "PRIVATE KEY", p384der), "RSA-1024": write("small.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)),
		"cert only": write("cert.pem", "CERTIFICATE", []byte{1}), "missing": filepath.Join(dir, "nope"),
	} {
		if _, err := LoadSigningKey(path); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
