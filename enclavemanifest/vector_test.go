package enclavemanifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"
)

// docVector is the example of docs/enclave-manifest.md: the manifest signed with the Ed25519
// key whose seed is 32 zero bytes (Ed25519 signatures are deterministic).
const docVector = `{"payload":"eyJ2ZXJzaW9uIjoxLCJtZWFzdXJlbWVudCI6IjI4ZWI2ODJjYjc4NTM1MTYzMzMzYWY4NDFiMmU5MGU0ZWM3MjBhNTFkNTg1NDc0Y2M1ZGFiNDg1NjdiNmZiNmUiLCJlbmNsYXZlIjp7InR5cGUiOiJzaW0iLCJydW50aW1lX3BhdGgiOiJidWlsdGluOndhc20iLCJhcmdzIjpbIm1lbW9yeT02NE0iXSwibG9nX2xldmVsIjoiaW5mbyIsInJhX3R5cGUiOiIifSwiZW50cnlwb2ludCI6eyJwYXRoIjoiL3Nydi9hcHAud2FzbSIsImFyZ3MiOlsiYXBwLndhc20iLCItdiJdLCJlbnYiOlsiUEFUSD0vdXNyL2JpbiIsIkE9MSJdLCJjd2QiOiIvc3J2In0sImltYWdlIjp7InJlZmVyZW5jZSI6InJlZ2lzdHJ5LmV4YW1wbGUvYXBwOjEiLCJkaWdlc3QiOiJzaGEyNTY6NWIwYmNhYmQxZWQyMmU5ZmIxMzEwY2Y2YzJkZWM3Y2RlZjE5ZjBhZDY5ZWZhMWYzOTJlOTRhNDMzMzUwMTI3MCJ9LCJjcmVhdGVkIjoiMjAyNi0xMS0yN1QwOTozMDowMFoiLCJzaWduZXIiOnsia2V5X2lkIjoic2hhMjU2OjMzOWUyZmY5MTc2MzA1MDdiNmE0MjNiNWNlMDg0ZTI4NWQxZmE2NWQ5M2IzZTI3YTYxOTVkM2JiZWJjOWFlMjMiLCJhbGdvcml0aG0iOiJlZDI1NTE5IiwiZXBoZW1lcmFsIjpmYWxzZX19","signature":"Wadmz3AW9I7DusK1THWi4xWuWlyho+FKKqXPB75HmfSY5y9N/9M4tQRxH0bG0b8jC65uif7UwszzJkjRdcZmAA=="}` + "\n"

func docVectorManifest() Manifest {
	return Manifest{
		Measurement: "28eb682cb78535163333af841b2e90e4ec720a51d585474cc5dab48567b6fb6e",
		Enclave:     Enclave{Type: "sim", RuntimePath: "builtin:wasm", Args: []string{"memory=64M"}, LogLevel: "info"},
		Entrypoint:  Entrypoint{Path: "/srv/app.wasm", Args: []string{"app.wasm", "-v"}, Env: []string{"PATH=/usr/bin", "A=1"}, Cwd: "/srv"},
		Image:       &Image{Reference: "registry.example/app:1", Digest: "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"},
		Created:     time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC),
	}
}

// TestDocumentedVector checks the documented example three ways: Sign reproduces it byte for
// byte; it verifies with nothing but the standard library, following the document's rules
// (base64 payload, context string, NUL, payload; key id = SHA-256 of the SPKI); and Verify
// accepts it.
func TestDocumentedVector(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	got := mustSign(t, docVectorManifest(), mustKeySigner(t, key))
	if string(got) != docVector {
		t.Fatalf("Sign produced\n%s\nthe document says\n%s", got, docVector)
	}

	var env struct{ Payload, Signature string }
	if err := json.Unmarshal([]byte(docVector), &env); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	sig, _ := base64.StdEncoding.DecodeString(env.Signature)
	if !ed25519.Verify(key.Public().(ed25519.PublicKey), append([]byte("inclavare-enclave-manifest\x00"), payload...), sig) {
		t.Fatal("the documented signature does not verify by the documented rule")
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	sum := sha256.Sum256(spki)
	var p struct {
		Signer struct {
			KeyID string `json:"key_id"`
		} `json:"signer"`
	}
	json.Unmarshal(payload, &p)
	if want := "sha256:" + hex.EncodeToString(sum[:]); p.Signer.KeyID != want {
		t.Fatalf("key id %s, want %s", p.Signer.KeyID, want)
	}
	if !bytes.HasPrefix(payload, []byte(`{"version":1,`)) {
		t.Fatalf("payload %s", payload)
	}
	if _, err := Verify([]byte(docVector), trustFor(t, key.Public())); err != nil {
		t.Fatal(err)
	}
}
