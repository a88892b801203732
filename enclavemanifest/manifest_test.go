package enclavemanifest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/native"
)

func TestRoundTripEachKeyType(t *testing.T) {
	for _, k := range testKeys(t) {
		t.Run(k.name, func(t *testing.T) {
			dir := t.TempDir()
			signer, err := LoadKeySigner(writeFile(t, dir, "key.pem", k.pem))
			if err != nil {
				t.Fatalf("LoadKeySigner: %v", err)
			}
			id, _ := signer.Identity(context.Background())
			if id.Algorithm != k.alg || id.Ephemeral {
				t.Fatalf("identity %+v, want algorithm %s, not ephemeral", id, k.alg)
			}
			data := mustSign(t, sampleManifest(), signer)

			trust, err := LoadTrust(writeFile(t, dir, "trust.pem", publicKeyPEM(t, k.key.Public())))
			if err != nil {
				t.Fatalf("LoadTrust: %v", err)
			}
			m, err := Verify(data, trust)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := sampleManifest()
			want.Version = Version
			want.Signer = SignerInfo{KeyID: id.KeyID, Algorithm: k.alg}
			if !reflect.DeepEqual(*m, want) {
				t.Fatalf("verified manifest\n%+v\nwant\n%+v", *m, want)
			}
			if err := m.Matches(sampleSettings(), want.Measurement); err != nil {
				t.Fatalf("Matches: %v", err)
			}
			if err := m.MatchesEntrypoint(want.Entrypoint); err != nil {
				t.Fatalf("MatchesEntrypoint: %v", err)
			}
		})
	}
}

func TestPayloadIsSignedAsStored(t *testing.T) {
	key := ed25519TestKey()
	data := mustSign(t, sampleManifest(), mustKeySigner(t, key))
	payload, sig, err := decodeEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	// The signature is plain Ed25519 over the context string, a NUL and the payload bytes.
	input := append([]byte("inclavare-enclave-manifest\x00"), payload...)
	if !bytes.Equal(SignatureInput(payload), input) {
		t.Fatal("SignatureInput is not context || NUL || payload")
	}
	if err := VerifySignature(AlgEd25519, key.Public(), payload, sig); err != nil {
		t.Fatal(err)
	}
	// HTML-significant characters are stored as they are, not as \u003c escapes.
	if !bytes.Contains(payload, []byte(`"NOTE=a <b> & \"c\""`)) {
		t.Fatalf("payload escapes HTML characters: %s", payload)
	}
	if !bytes.HasPrefix(payload, []byte(`{"version":1,"measurement":"`)) {
		t.Fatalf("payload starts %.40s", payload)
	}
}

// Every single-byte change of the manifest file, of the payload bytes and of the signature
// bytes must fail verification.
func TestByteFlipsFail(t *testing.T) {
	for _, k := range testKeys(t) {
		if strings.Contains(k.name, "sec1") || strings.Contains(k.name, "rsa-2048 pkcs8") {
			continue // same key as another case
		}
		t.Run(k.name, func(t *testing.T) {
			data := mustSign(t, sampleManifest(), mustKeySigner(t, k.key))
			trust := trustFor(t, k.key.Public())
			if _, err := Verify(data, trust); err != nil {
				t.Fatal(err)
			}
			for i := range data {
				for _, mask := range []byte{0x01, 0x20, 0x80} {
					flipped := bytes.Clone(data)
					flipped[i] ^= mask
					if _, err := Verify(flipped, trust); err == nil {
						t.Fatalf("file byte %d ^ %#x (%q → %q) still verifies", i, mask, data[i], flipped[i])
					}
				}
			}
			payload, sig, _ := decodeEnvelope(data)
			for i := range payload {
				p := bytes.Clone(payload)
				p[i] ^= 0x01
				env, err := encodeEnvelope(p, sig)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Verify(env, trust); err == nil {
					t.Fatalf("payload byte %d flipped still verifies", i)
				}
			}
			for i := range sig {
				s := bytes.Clone(sig)
				s[i] ^= 0x01
				env, _ := encodeEnvelope(payload, s)
				if _, err := Verify(env, trust); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("signature byte %d flipped: %v, want ErrBadSignature", i, err)
				}
			}
		})
	}
}

func TestWrongKeyFails(t *testing.T) {
	ks := testKeys(t)
	signed := mustSign(t, sampleManifest(), mustKeySigner(t, ks[0].key))
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	if _, err := Verify(signed, trustFor(t, other.Public(), ks[2].key.Public())); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("untrusted key: %v, want ErrUntrustedKey", err)
	}
	if _, err := Verify(signed, NewTrust()); !errors.Is(err, ErrUntrustedKey) || !strings.Contains(err.Error(), "trusted: none") {
		t.Fatalf("empty trust: %v", err)
	}
	if _, err := Verify(signed, nil); err == nil {
		t.Fatal("nil trust verified")
	}

	// A manifest signed by another key that claims the trusted key's id: the signature fails.
	trustedID, _ := KeyID(ks[0].key.Public())
	forged := editPayload(t, payloadOf(t, mustSign(t, sampleManifest(), mustKeySigner(t, other))), func(v map[string]any) {
		v["signer"].(map[string]any)["key_id"] = trustedID
	})
	if _, err := Verify(signRaw(t, other, forged), trustFor(t, ks[0].key.Public())); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("key id substitution: %v, want ErrBadSignature", err)
	}

	// A trusted Ed25519 key id with the manifest claiming ECDSA: the algorithm is the key's.
	edID, _ := KeyID(ks[2].key.Public())
	confused := editPayload(t, payloadOf(t, signed), func(v map[string]any) {
		v["signer"].(map[string]any)["key_id"] = edID
	})
	if _, err := Verify(signRaw(t, ks[0].key, confused), trustFor(t, ks[2].key.Public())); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("algorithm confusion: %v, want ErrUnsupportedAlgorithm", err)
	}
}

func TestTamperedMeasurementFails(t *testing.T) {
	key := ed25519TestKey()
	data := mustSign(t, sampleManifest(), mustKeySigner(t, key))
	payload, sig, _ := decodeEnvelope(data)
	tampered := bytes.Replace(payload, []byte("28eb682c"), []byte("28eb682d"), 1)
	env, _ := encodeEnvelope(tampered, sig)
	if _, err := Verify(env, trustFor(t, key.Public())); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered measurement: %v, want ErrBadSignature", err)
	}
}

// A tampered workload: the manifest verifies, but rune's own measurement of the changed
// executable differs, and Matches says so.
func TestTamperedWorkloadFailsMatch(t *testing.T) {
	exe := []byte("\x7fELF original workload")
	launch := native.Launch{Args: []string{"/bin/app"}, Env: []string{"A=1"}, Dir: "/"}
	m := sampleManifest()
	m.Measurement = native.Measure(exe, launch)
	m.Enclave = Enclave{Type: attestation.Sim, RuntimePath: "builtin:native", LogLevel: "info"}
	key := ed25519TestKey()
	got, err := Verify(mustSign(t, m, mustKeySigner(t, key)), trustFor(t, key.Public()))
	if err != nil {
		t.Fatal(err)
	}
	settings := &enclave.Settings{Type: attestation.Sim, RuntimePath: "builtin:native", LogLevel: "info"}
	if err := got.Matches(settings, native.Measure(exe, launch)); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	exe[len(exe)-1] ^= 1
	err = got.Matches(settings, native.Measure(exe, launch))
	var mm *MismatchError
	if !errors.As(err, &mm) || len(mm.Mismatches) != 1 || !strings.HasPrefix(mm.Mismatches[0], "measurement:") {
		t.Fatalf("tampered workload: %v", err)
	}
}

func TestMatchesNamesEveryMismatch(t *testing.T) {
	key := ed25519TestKey()
	m, err := Verify(mustSign(t, sampleManifest(), mustKeySigner(t, key)), trustFor(t, key.Public()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		settings    *enclave.Settings
		measurement string
		want        []string
	}{
		{"equal", sampleSettings(), m.Measurement, nil},
		{"everything", &enclave.Settings{Type: attestation.SGX, RuntimePath: "/usr/lib/libpal.so", Args: []string{"memory=32M"}, LogLevel: "debug", RAType: "dcap"},
			hex64('0'), []string{"measurement:", "enclave type:", "enclave runtime path:", "enclave runtime args:", "enclave log level:", "remote attestation type:"}},
		{"args split differently", &enclave.Settings{Type: attestation.Sim, RuntimePath: "builtin:wasm", Args: []string{"memory=64M", ""}, LogLevel: "info"},
			m.Measurement, []string{"enclave runtime args:"}},
		{"no enclave", nil, m.Measurement, []string{"no enclave settings"}},
		{"upper-case measurement", sampleSettings(), strings.ToUpper(m.Measurement), []string{"measurement:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Matches(tc.settings, tc.measurement)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var mm *MismatchError
			if !errors.As(err, &mm) || len(mm.Mismatches) != len(tc.want) {
				t.Fatalf("got %v, want %d mismatches", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(mm.Mismatches[i], w) {
					t.Errorf("mismatch %d = %q, want %q", i, mm.Mismatches[i], w)
				}
			}
		})
	}
}

func TestMatchesEntrypoint(t *testing.T) {
	m := sampleManifest()
	e := m.Entrypoint
	if err := m.MatchesEntrypoint(e); err != nil {
		t.Fatal(err)
	}
	e.Env = []string{"PATH=/usr/bin", "HOSTNAME=other", "NOTE=a <b> & \"c\""}
	e.Cwd = "/"
	err := m.MatchesEntrypoint(e)
	if err == nil || !strings.Contains(err.Error(), `"HOSTNAME" (value)`) || !strings.Contains(err.Error(), "entrypoint cwd") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "other") || strings.Contains(err.Error(), "demo") {
		t.Fatalf("environment values leak into the error: %v", err)
	}
}

// Every structural and semantic oddity is refused even when the signature over it is good.
func TestStrictParsing(t *testing.T) {
	key := ed25519TestKey()
	trust := trustFor(t, key.Public())
	good := payloadOf(t, mustSign(t, sampleManifest(), mustKeySigner(t, key)))
	edit := func(f func(map[string]any)) []byte { return editPayload(t, good, f) }
	signer := func(v map[string]any) map[string]any { return v["signer"].(map[string]any) }
	ephemeral, _ := NewEphemeralSigner()
	ephemeralPayload := payloadOf(t, mustSign(t, sampleManifest(), ephemeral))
	otherPub, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(otherPub.Public())

	tests := []struct {
		name    string
		payload []byte
		file    []byte // when set, used as the whole file instead of signing payload
		is      error
		msg     string
	}{
		{name: "unknown member", payload: edit(func(v map[string]any) { v["extra"] = "x" }), is: ErrMalformed, msg: `unknown field "extra"`},
		{name: "unknown nested member", payload: edit(func(v map[string]any) { v["enclave"].(map[string]any)["pal_version"] = "3" }), is: ErrMalformed, msg: "pal_version"},
		{name: "duplicate member", payload: bytes.Replace(good, []byte(`"measurement":`), []byte(`"measurement":"`+hex64('b')+`","measurement":`), 1), is: ErrMalformed, msg: `"measurement" appears twice`},
		{name: "case-folded member", payload: bytes.Replace(good, []byte(`"measurement":`), []byte(`"Measurement":`), 1), is: ErrMalformed, msg: "lower-case"},
		{name: "unicode-folded member", payload: bytes.Replace(good, []byte(`"measurement":`), []byte(`"meaſurement":`), 1), is: ErrMalformed, msg: "lower-case"},
		{name: "null", payload: bytes.Replace(good, []byte(`"ra_type":""`), []byte(`"ra_type":null`), 1), is: ErrMalformed, msg: "null"},
		{name: "version 2", payload: bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1), is: ErrUnsupportedVersion, msg: "version 2"},
		{name: "version as string", payload: bytes.Replace(good, []byte(`"version":1`), []byte(`"version":"1"`), 1), is: ErrUnsupportedVersion},
		{name: "version 1.0", payload: bytes.Replace(good, []byte(`"version":1`), []byte(`"version":1.0`), 1), is: ErrUnsupportedVersion},
		{name: "no version", payload: edit(func(v map[string]any) { delete(v, "version") }), is: ErrMalformed, msg: "no version"},
		{name: "unknown algorithm", payload: edit(func(v map[string]any) { signer(v)["algorithm"] = "ecdsa-p384-sha384" }), is: ErrUnsupportedAlgorithm},
		{name: "trailing data in payload", payload: append(bytes.Clone(good), []byte(`{}`)...), is: ErrMalformed, msg: "after the JSON value"},
		{name: "trailing garbage in payload", payload: append(bytes.Clone(good), 'x'), is: ErrMalformed},
		{name: "invalid UTF-8", payload: bytes.Replace(good, []byte("HOSTNAME=demo"), []byte("HOSTNAME=d\xffmo"), 1), is: ErrMalformed, msg: "UTF-8"},
		{name: "upper-case measurement", payload: bytes.Replace(good, []byte("28eb682c"), []byte("28EB682C"), 1), is: ErrMalformed, msg: "measurement"},
		{name: "short measurement", payload: bytes.Replace(good, []byte("28eb682c"), []byte("28eb68"), 1), is: ErrMalformed, msg: "measurement"},
		{name: "unknown enclave type", payload: edit(func(v map[string]any) { v["enclave"].(map[string]any)["type"] = "sgx2" }), is: ErrMalformed, msg: "unknown enclave type"},
		{name: "bad image digest", payload: edit(func(v map[string]any) { v["image"].(map[string]any)["digest"] = "sha256:xyz" }), is: ErrMalformed, msg: "image.digest"},
		{name: "relative cwd", payload: edit(func(v map[string]any) { v["entrypoint"].(map[string]any)["cwd"] = "srv" }), is: ErrMalformed, msg: "cwd"},
		{name: "bad key id", payload: edit(func(v map[string]any) { signer(v)["key_id"] = "sha1:abc" }), is: ErrMalformed, msg: "key_id"},
		{name: "public key without ephemeral", payload: edit(func(v map[string]any) { signer(v)["public_key"] = strictBase64.EncodeToString(otherDER) }), is: ErrMalformed, msg: "only allowed for an ephemeral key"},
		{name: "ephemeral without public key", payload: edit(func(v map[string]any) { signer(v)["ephemeral"] = true }), is: ErrMalformed, msg: "public_key is required"},
		{name: "ephemeral key not the key id's", payload: editPayload(t, ephemeralPayload, func(v map[string]any) { signer(v)["public_key"] = strictBase64.EncodeToString(otherDER) }), is: ErrMalformed, msg: "key id"},
		{name: "missing created", payload: edit(func(v map[string]any) { delete(v, "created") }), is: ErrMalformed, msg: "created"},
		{name: "envelope trailing data", file: append(mustSign(t, sampleManifest(), mustKeySigner(t, key)), []byte("{}")...), is: ErrMalformed, msg: "after the JSON value"},
		{name: "envelope unknown member", file: []byte(`{"payload":"e30=","signature":"AA==","alg":"none"}`), is: ErrMalformed, msg: "alg"},
		{name: "envelope without signature", file: []byte(`{"payload":"e30="}`), is: ErrMalformed, msg: "both required"},
		{name: "non-canonical base64", file: []byte(`{"payload":"e31=","signature":"AA=="}`), is: ErrMalformed, msg: "base64"},
		{name: "not JSON", file: []byte("-----BEGIN PUBLIC KEY-----"), is: ErrMalformed},
		{name: "empty", file: []byte{}, is: ErrMalformed},
		{name: "oversized", file: append([]byte(`{"payload":"`), bytes.Repeat([]byte("A"), MaxSize)...), is: ErrMalformed, msg: "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == nil {
				file = signRaw(t, key, tc.payload)
			}
			_, err := Verify(file, trust)
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
			if _, err := ParseUnverified(file); err == nil && tc.is != ErrUnsupportedAlgorithm {
				t.Fatalf("ParseUnverified accepted it")
			}
		})
	}
}

func TestEphemeralKey(t *testing.T) {
	s, err := NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	data := mustSign(t, sampleManifest(), s)
	m, err := ParseUnverified(data)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Signer.Ephemeral || m.Signer.PublicKey == "" {
		t.Fatalf("ephemeral manifest does not say so: %+v", m.Signer)
	}
	if _, err := Verify(data, NewTrust()); !errors.Is(err, ErrEphemeralKey) {
		t.Fatalf("default trust: %v, want ErrEphemeralKey", err)
	}
	// Trusting the ephemeral key by id does not help either: ephemeral is refused as such.
	id, _ := s.Identity(context.Background())
	if _, err := Verify(data, trustFor(t, id.PublicKey)); !errors.Is(err, ErrEphemeralKey) {
		t.Fatalf("ephemeral key trusted by id: %v, want ErrEphemeralKey", err)
	}
	allow := NewTrust()
	allow.AllowEphemeral = true
	if _, err := Verify(data, allow); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	payload, sig, _ := decodeEnvelope(data)
	tampered, _ := encodeEnvelope(bytes.Replace(payload, []byte("28eb"), []byte("28ec"), 1), sig)
	if _, err := Verify(tampered, allow); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered ephemeral manifest: %v", err)
	}
}

func TestCertificateTrust(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notBefore := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := selfSigned(t, key, notBefore, notBefore.AddDate(1, 0, 0), x509.KeyUsageDigitalSignature)
	data := mustSign(t, sampleManifest(), mustKeySigner(t, key))

	tests := []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"inside", notBefore.AddDate(0, 6, 0), true},
		{"before", notBefore.Add(-time.Second), false},
		{"after", notBefore.AddDate(1, 0, 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTrust()
			if err := tr.AddPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})); err != nil {
				t.Fatal(err)
			}
			tr.Now = func() time.Time { return tc.now }
			_, err := Verify(data, tr)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %t", err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrUntrustedKey) {
				t.Fatalf("err = %v, want ErrUntrustedKey", err)
			}
		})
	}
	caOnly := selfSigned(t, key, notBefore, notBefore.AddDate(1, 0, 0), x509.KeyUsageCertSign)
	if _, err := NewTrust().AddCertificate(caOnly); err == nil || !strings.Contains(err.Error(), "digital signatures") {
		t.Fatalf("certificate without digitalSignature usage: %v", err)
	}
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey, from, to time.Time, usage x509.KeyUsage) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "manifest signer"}, NotBefore: from, NotAfter: to, KeyUsage: usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAddPEMErrors(t *testing.T) {
	ks := testKeys(t)
	good := publicKeyPEM(t, ks[0].key.Public())
	tests := []struct {
		name, data, msg string
	}{
		{"private key", string(ks[0].pem), `"PRIVATE KEY" (want PUBLIC KEY or CERTIFICATE)`},
		{"no PEM", "not a key\n", "no PEM block"},
		{"empty", "", "no PEM block"},
		{"garbage after", string(good) + "garbage", "not PEM"},
		{"bad DER", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PUBLIC KEY"},
		{"small RSA", string(publicKeyPEM(t, rsaKey(t, 1024).Public())), "1024 bits"},
		{"P-384", string(publicKeyPEM(t, p384(t).Public())), "only P-256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := NewTrust().AddPEM([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	if _, err := LoadTrust("/dev/null"); err == nil {
		t.Fatal("LoadTrust read a device")
	}
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func p384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParsePrivateKeyPEMErrors(t *testing.T) {
	ks := testKeys(t)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384(t))
	rsa1024 := x509.MarshalPKCS1PrivateKey(rsaKey(t, 1024))
	tests := []struct {
		name string
		data []byte
		msg  string
	}{
		{"P-384", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384der}), "only P-256"},
		{"RSA 1024", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: rsa1024}), "1024 bits"},
		{"encrypted PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted"},
		{"encrypted legacy", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}), "encrypted"},
		{"two keys", append(bytes.Clone(ks[0].pem), ks[2].pem...), "more than one PEM block"},
		{"public key", publicKeyPEM(t, ks[0].key.Public()), "not a private key"},
		{"no PEM", []byte("hello"), "no PEM block"},
		{"bad DER", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "parse PRIVATE KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKeyPEM(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	if _, err := LoadKeySigner("/nonexistent/key.pem"); err == nil {
		t.Fatal("LoadKeySigner of a missing file succeeded")
	}
}

func TestSignRefusesBadManifests(t *testing.T) {
	s := mustKeySigner(t, ed25519TestKey())
	tests := []struct {
		name string
		edit func(*Manifest)
		msg  string
	}{
		{"no measurement", func(m *Manifest) { m.Measurement = "" }, "measurement"},
		{"bad settings", func(m *Manifest) { m.Enclave.LogLevel = "loud" }, "ENCLAVE_RUNTIME_LOGLEVEL"},
		{"no entrypoint", func(m *Manifest) { m.Entrypoint.Path = "" }, "entrypoint.path"},
		{"non-UTF-8 env", func(m *Manifest) { m.Entrypoint.Env = []string{"A=\xff"} }, "entrypoint.env[0] is not valid UTF-8"},
		{"empty image", func(m *Manifest) { m.Image = &Image{} }, "image"},
		{"huge", func(m *Manifest) { m.Entrypoint.Args = []string{strings.Repeat("a", MaxPayloadSize)} }, "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleManifest()
			tc.edit(&m)
			_, err := Sign(context.Background(), m, s)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}

// A signer whose signatures do not verify (a faulty HSM, a confused service) is caught by Sign.
type lyingSigner struct{ *KeySigner }

func (l lyingSigner) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	sig, err := l.KeySigner.Sign(ctx, payload)
	sig[0] ^= 1
	return sig, err
}

func TestSignCatchesBadSignatures(t *testing.T) {
	_, err := Sign(context.Background(), sampleManifest(), lyingSigner{mustKeySigner(t, ed25519TestKey())})
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("got %v, want ErrBadSignature", err)
	}
}

func TestSignDoesNotAliasCaller(t *testing.T) {
	m := sampleManifest()
	before := sampleManifest()
	mustSign(t, m, mustKeySigner(t, ed25519TestKey()))
	if !reflect.DeepEqual(m, before) {
		t.Fatal("Sign changed the caller's manifest")
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, k := range testKeys(b) {
		if strings.Contains(k.name, "sec1") || strings.Contains(k.name, "rsa-2048 pkcs8") {
			continue
		}
		b.Run(k.name, func(b *testing.B) {
			data := mustSign(b, sampleManifest(), mustKeySigner(b, k.key))
			trust := trustFor(b, k.key.Public())
			for b.Loop() {
				if _, err := Verify(data, trust); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
