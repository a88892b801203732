package kbs

import (
	"encoding/json"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// The broker parses Attestation messages and evidence wrappers from anyone who can reach it.
func FuzzParseAttestation(f *testing.F) {
	key, _ := NewECKey()
	pub, _ := json.Marshal(key.Public())
	f.Add(`{"runtime-data":{"nonce":"bg==","tee-pubkey":`+string(pub)+`},"tee-evidence":{"primary_evidence":{"evidence":"AA=="},"additional_evidence":""}}`, 0)
	f.Add(`{"tee-pubkey":`+string(pub)+`,"tee-evidence":{"quote":"AA==","cc_eventlog":null}}`, 2)
	f.Add(`{"tee-pubkey":{"kty":"RSA","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"},"tee-evidence":{"primary_evidence":{},"additional_evidence":"{}"}}`, 1)
	f.Fuzz(func(t *testing.T, body string, v int) {
		version := Versions[uint(v)%uint(len(Versions))]
		a, err := ParseAttestation(version, []byte(body))
		if err != nil {
			return
		}
		if a.Key == nil || (a.Key.ec == nil && a.Key.rsa == nil) {
			t.Fatal("accepted an unchecked key")
		}
		if _, err := ReportData(HashSHA384, version, "n", a.Key, a.Additional); err != nil && a.Key != nil {
			// Invalid UTF-8 in the additional evidence is refused here, never hashed loosely.
			return
		}
		for _, tee := range []attestation.TEE{attestation.Sim, attestation.TDX, attestation.SNP} {
			_, _ = UnwrapEvidence(tee, a.Evidence)
		}
	})
}

// The client decrypts whatever the broker (or whoever sits in its place) sends.
func FuzzOpen(f *testing.F) {
	key, _ := NewECKey()
	sealed, _ := Seal(key.Public(), []byte("seed"))
	f.Add(sealed)
	f.Add([]byte(`{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ","encrypted_key":"","iv":"","ciphertext":"","tag":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pt, err := key.Open(body)
		if err == nil && string(pt) != "seed" {
			t.Fatalf("opened forged JWE to %q", pt)
		}
	})
}
