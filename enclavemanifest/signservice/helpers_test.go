package signservice

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
)

// ed25519TestKey is a fixed key, so that fuzz seeds are the same on every run.
func ed25519TestKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

var (
	otherOnce sync.Once
	other     *ecdsa.PrivateKey
)

// otherKey is a second signing key, not the service's.
func otherKey() *ecdsa.PrivateKey {
	otherOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		other = k
	})
	return other
}

func mustKeySigner(t testing.TB, key crypto.Signer) *enclavemanifest.KeySigner {
	t.Helper()
	s, err := enclavemanifest.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sampleManifest() enclavemanifest.Manifest {
	return enclavemanifest.Manifest{
		Measurement: strings.Repeat("5a", 32),
		Enclave:     enclavemanifest.Enclave{Type: "sim", RuntimePath: "builtin:wasm", Args: []string{"memory=64M"}, LogLevel: "info"},
		Entrypoint:  enclavemanifest.Entrypoint{Path: "/app/hello.wasm", Args: []string{"hello.wasm"}, Env: []string{"A=1"}, Cwd: "/"},
		Image:       &enclavemanifest.Image{Reference: "registry.example/hello:1", Digest: "sha256:" + strings.Repeat("a", 64)},
		Created:     time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
	}
}

func mustSign(t testing.TB, m enclavemanifest.Manifest, s enclavemanifest.Signer) []byte {
	t.Helper()
	data, err := enclavemanifest.Sign(context.Background(), m, s)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// payloadOf returns the payload bytes of a manifest file.
func payloadOf(t testing.TB, data []byte) []byte {
	t.Helper()
	var env struct{ Payload string }
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	p, err := strictBase64.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func trustFor(t testing.TB, pubs ...crypto.PublicKey) *enclavemanifest.Trust {
	t.Helper()
	tr := enclavemanifest.NewTrust()
	for _, p := range pubs {
		if _, err := tr.AddPublicKey(p); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}
