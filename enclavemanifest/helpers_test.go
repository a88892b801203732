package enclavemanifest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

// testKey is a private key in one of the PEM forms LoadKeySigner reads.
type testKey struct {
	name string
	key  crypto.Signer
	pem  []byte
	alg  string
}

var (
	keysOnce sync.Once
	keys     []testKey
)

// testKeys returns one key per supported form, generated once per test binary (RSA key
// generation is slow).
func testKeys(t testing.TB) []testKey {
	t.Helper()
	keysOnce.Do(func() {
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		pkcs8 := func(k crypto.Signer) []byte {
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				panic(err)
			}
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
		sec1, err := x509.MarshalECPrivateKey(ec)
		if err != nil {
			panic(err)
		}
		keys = []testKey{
			{"ecdsa-p256 pkcs8", ec, pkcs8(ec), AlgECDSAP256SHA256},
			{"ecdsa-p256 sec1", ec, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), AlgECDSAP256SHA256},
			{"ed25519 pkcs8", ed, pkcs8(ed), AlgEd25519},
			{"rsa-2048 pkcs1", rk, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), AlgRSAPSSSHA256},
			{"rsa-2048 pkcs8", rk, pkcs8(rk), AlgRSAPSSSHA256},
		}
	})
	return keys
}

// ed25519TestKey is a fixed key, so that fuzz seeds are the same on every run.
func ed25519TestKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func publicKeyPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sampleManifest is a manifest as the shim would fill it in before signing.
func sampleManifest() Manifest {
	return Manifest{
		Measurement: "28eb682cb78535163333af841b2e90e4ec720a51d585474cc5dab48567b6fb6e",
		Enclave: Enclave{
			Type: attestation.Sim, RuntimePath: "builtin:wasm", Args: []string{"memory=64M"}, LogLevel: "info",
		},
		Entrypoint: Entrypoint{
			Path: "/app/hello.wasm", Args: []string{"hello.wasm", "-v"},
			Env: []string{"PATH=/usr/bin", "HOSTNAME=demo", "NOTE=a <b> & \"c\""}, Cwd: "/srv",
		},
		Image:   &Image{Reference: "docker.io/library/hello:1", Digest: "sha256:" + hex64('a')},
		Created: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
	}
}

func sampleSettings() *enclave.Settings {
	return &enclave.Settings{Type: attestation.Sim, RuntimePath: "builtin:wasm", Args: []string{"memory=64M"}, LogLevel: "info"}
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func trustFor(t testing.TB, pubs ...crypto.PublicKey) *Trust {
	t.Helper()
	tr := NewTrust()
	for _, p := range pubs {
		if _, err := tr.AddPublicKey(p); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func mustSign(t testing.TB, m Manifest, s Signer) []byte {
	t.Helper()
	data, err := Sign(context.Background(), m, s)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return data
}

func mustKeySigner(t testing.TB, key crypto.Signer) *KeySigner {
	t.Helper()
	s, err := NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signRaw builds a manifest file around arbitrary payload bytes, properly signed by key: the
// way to show that a check other than the signature refuses a document.
func signRaw(t testing.TB, key crypto.Signer, payload []byte) []byte {
	t.Helper()
	alg, err := AlgorithmFor(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signPayload(key, alg, payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := encodeEnvelope(payload, sig)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// payloadOf returns the payload bytes of a manifest file.
func payloadOf(t testing.TB, data []byte) []byte {
	t.Helper()
	p, _, err := decodeEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// editPayload decodes a payload into generic JSON, lets edit change it and re-encodes it.
func editPayload(t testing.TB, payload []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(payload, &v); err != nil {
		t.Fatal(err)
	}
	edit(v)
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }
