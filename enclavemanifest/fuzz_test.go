package enclavemanifest

import (
	"reflect"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
)

// fuzzManifests are well-formed manifest files signed with the fixed Ed25519 test key.
func fuzzManifests(f *testing.F) [][]byte {
	s := mustKeySigner(f, ed25519TestKey())
	full := mustSign(f, sampleManifest(), s)
	bare := sampleManifest()
	bare.Image = nil
	bare.Enclave.Args = nil
	bare.Entrypoint = Entrypoint{Path: "/app"}
	return [][]byte{full, mustSign(f, bare, s)}
}

// FuzzVerify feeds arbitrary manifest files to Verify and ParseUnverified: no panic, and
// whatever verifies re-encodes to a payload that parses to the same manifest.
func FuzzVerify(f *testing.F) {
	for _, m := range fuzzManifests(f) {
		f.Add(m)
	}
	eph, _ := NewEphemeralSigner()
	f.Add(mustSign(f, sampleManifest(), eph))
	f.Add([]byte(`{"payload":"e30=","signature":"AA=="}`))
	f.Add([]byte(`{"payload":"","signature":""}`))
	f.Add([]byte("null"))
	trust := trustFor(f, ed25519TestKey().Public())
	trust.AllowEphemeral = true
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Verify(data, trust)
		pm, perr := ParseUnverified(data)
		if err != nil {
			return
		}
		if perr != nil || !reflect.DeepEqual(m, pm) {
			t.Fatalf("Verify accepted what ParseUnverified refused (%v) or read differently", perr)
		}
		roundTrip(t, m)
	})
}

// FuzzParsePayload feeds arbitrary payload bytes to the payload parser: no panic, and an
// accepted payload survives a re-encoding unchanged.
func FuzzParsePayload(f *testing.F) {
	for _, m := range fuzzManifests(f) {
		f.Add(payloadOf(f, m))
	}
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"x":1}`))
	f.Add([]byte(`{"a":{"b":[[[[[[[[[]]]]]]]]]}}`))
	f.Add([]byte(`{"version":1,"version":1}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := ParsePayload(payload)
		if err != nil {
			return
		}
		roundTrip(t, m)
	})
}

func roundTrip(t *testing.T, m *Manifest) {
	t.Helper()
	again, err := marshalPayload(m)
	if err != nil {
		t.Fatalf("re-encode an accepted manifest: %v", err)
	}
	m2, err := ParsePayload(again)
	if err != nil {
		t.Fatalf("re-encoded manifest refused: %v\n%s", err, again)
	}
	// Created may differ in its location but must be the same instant.
	if !m.Created.Equal(m2.Created) {
		t.Fatalf("created changed: %v → %v", m.Created, m2.Created)
	}
	m2.Created = m.Created
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
	}
}

// FuzzTrustPEM feeds arbitrary trust files to AddPEM: errors, never a panic; an accepted file
// trusts at least one key.
func FuzzTrustPEM(f *testing.F) {
	f.Add(publicKeyPEM(f, ed25519TestKey().Public()))
	f.Add(testpki.CertPEM(testpki.NewCA(f, "trust").Cert))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewTrust()
		if err := tr.AddPEM(data); err == nil && len(tr.KeyIDs()) == 0 {
			t.Fatal("an accepted trust file trusts nothing")
		}
	})
}
