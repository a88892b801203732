package kbs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// The runtime data trustee hashes, written out by hand in RFC 8785 form: members sorted, no
// whitespace. kbs/src/attestation/backend.rs builds {"tee-pubkey", "nonce",
// "additional-evidence"} and the attestation service canonicalizes it with
// serde_json_canonicalizer before SHA-384.
func TestRuntimeDataCanonicalForm(t *testing.T) {
	key := &JWK{Kty: "EC", Crv: "P-256", Alg: AlgECDHES, X: "xx", Y: "yy"}
	got, err := RuntimeDataJSON(Version, "bm9uY2U=", key, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"xx","y":"yy"}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	got, _ = RuntimeDataJSON(Version02, "n", &JWK{Kty: "RSA", Alg: AlgRSA, N: "nn", E: "AQAB"}, "ignored")
	if want := `{"nonce":"n","tee-pubkey":{"alg":"RSA-OAEP-256","e":"AQAB","kty":"RSA","n":"nn"}}`; string(got) != want {
		t.Fatalf("0.2.0: got %s", got)
	}
	// Additional evidence is a JSON string inside JSON: its quotes and controls are escaped as
	// ECMAScript does (RFC 8785 §3.2.2.2).
	got, _ = RuntimeDataJSON(Version, "n", key, "{\"gpu\":\"a\\b\"}\n\x01\u2028é")
	if !strings.Contains(string(got), `"additional-evidence":"{\"gpu\":\"a\\b\"}\n\u0001`+"\u2028é\"") {
		t.Fatalf("escaping: %s", got)
	}
	rd, err := ReportData(HashSHA384, Version, "bm9uY2U=", key, "")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum384([]byte(want))
	if !bytes.Equal(rd[:48], sum[:]) || !bytes.Equal(rd[48:], make([]byte, 16)) {
		t.Fatalf("report data %x", rd)
	}
}

// An Attestation message as guest-components' kbs_protocol serializes it with serde: "init-data"
// null when there is none, the TDX attester's {"cc_eventlog", "quote"}.
func TestParseGuestComponentsAttestation(t *testing.T) {
	key, err := NewECKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := json.Marshal(key.Public())
	quote := base64.StdEncoding.EncodeToString([]byte("quote bytes"))
	body := `{"init-data":null,"runtime-data":{"nonce":"Tk9OQ0U=","tee-pubkey":` + string(pub) +
		`},"tee-evidence":{"primary_evidence":{"cc_eventlog":null,"quote":"` + quote + `"},"additional_evidence":""}}`
	a, err := ParseAttestation(Version, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if a.Nonce != "Tk9OQ0U=" || !a.Key.Equal(key.Public()) || a.Additional != "" || a.InitData != nil {
		t.Fatalf("%+v", a)
	}
	ev, err := UnwrapEvidence(attestation.TDX, a.Evidence)
	if err != nil || string(ev) != "quote bytes" {
		t.Fatalf("%q %v", ev, err)
	}
	if _, err := UnwrapEvidence(attestation.SNP, a.Evidence); err == nil {
		t.Fatal("a quote object taken as SNP evidence")
	}
	// A member in runtime-data that the evidence would not bind is refused.
	bad := strings.Replace(body, `"nonce":`, `"extra":"x","nonce":`, 1)
	if _, err := ParseAttestation(Version, []byte(bad)); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Fatalf("extra runtime data: %v", err)
	}
	if _, err := ParseAttestation("0.1.1", []byte(body)); err == nil {
		t.Fatal("0.1.1 accepted")
	}
	// One reading only: members named twice, also in another case, are refused.
	for _, twice := range []string{
		strings.Replace(body, `"tee-evidence":`, `"tee-evidence":{},"tee-evidence":`, 1),
		strings.Replace(body, `"nonce":`, `"NONCE":"x","nonce":`, 1),
	} {
		if _, err := ParseAttestation(Version, []byte(twice)); err == nil || !strings.Contains(err.Error(), "twice") && !strings.Contains(err.Error(), "only in case") {
			t.Fatalf("member named twice: %v", err)
		}
	}
}

func TestJWKChecks(t *testing.T) {
	ec, _ := NewECKey()
	good, _ := json.Marshal(ec.Public())
	if _, err := ParseJWK(good); err != nil {
		t.Fatal(err)
	}
	notOnCurve := ec.Public().X[:len(ec.Public().X)-2] + "AA"
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, raw := range map[string]string{
		"unknown member": strings.Replace(string(good), `"kty"`, `"kid":"x","kty"`, 1),
		"RSA1_5":         `{"kty":"RSA","alg":"RSA1_5","n":"` + b64(small.N.Bytes()) + `","e":"AQAB"}`,
		"small RSA":      `{"kty":"RSA","alg":"RSA-OAEP-256","n":"` + b64(small.N.Bytes()) + `","e":"AQAB"}`,
		"off curve":      strings.Replace(string(good), ec.Public().X, notOnCurve, 1),
		"short x":        strings.Replace(string(good), ec.Public().X, "AAAA", 1),
		"curve":          strings.Replace(string(good), "P-256", "secp256k1", 1),
		"oct":            `{"kty":"oct","alg":"A256KW","k":"AAAA"}`,
		"null":           `null`,
	} {
		if _, err := ParseJWK(json.RawMessage(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func testKeys(t *testing.T) map[string]*Key {
	t.Helper()
	ec, err := NewECKey()
	if err != nil {
		t.Fatal(err)
	}
	rk, err := NewRSAKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Key{"EC": ec, "RSA": rk}
}

func TestSealOpen(t *testing.T) {
	for name, k := range testKeys(t) {
		t.Run(name, func(t *testing.T) {
			msg := []byte("secret")
			sealed, err := Seal(k.Public(), msg)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := k.Open(sealed)
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("%q %v", pt, err)
			}
			other := testKeys(t)[name]
			if _, err := other.Open(sealed); err == nil {
				t.Fatal("opened with another key")
			}
			// Every member altered, one bit: the tag (or the key unwrap) fails.
			var r map[string]string
			_ = json.Unmarshal(sealed, &r)
			for _, member := range []string{"protected", "encrypted_key", "iv", "ciphertext", "tag"} {
				raw, _ := base64.RawURLEncoding.DecodeString(r[member])
				raw[len(raw)-1] ^= 1
				m := map[string]string{}
				for k, v := range r {
					m[k] = v
				}
				m[member] = base64.RawURLEncoding.EncodeToString(raw)
				body, _ := json.Marshal(m)
				if pt, err := k.Open(body); err == nil {
					t.Errorf("%s altered: opened %q", member, pt)
				}
			}
			// Members and header parameters outside the protocol are refused.
			withAAD := strings.Replace(string(sealed), `{`, `{"aad":"eA",`, 1)
			if _, err := k.Open([]byte(withAAD)); err == nil {
				t.Error("aad member accepted")
			}
		})
	}
}

// guest-components (kbs_protocol keypair.rs) computes the AAD by decoding the protected header
// into kbs-types' ProtectedHeader {alg, enc, flattened others} and serializing it again; with
// serde_json's preserve_order the others keep the order read, without it they are sorted. Both
// readings must give back the exact "protected" string, or a CoCo client cannot decrypt.
func TestProtectedHeaderSurvivesSerdeReserialization(t *testing.T) {
	for name, k := range testKeys(t) {
		sealed, err := Seal(k.Public(), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		var r Response
		_ = json.Unmarshal(sealed, &r)
		header, _ := base64.RawURLEncoding.DecodeString(r.Protected)
		// Sorted: encoding/json sorts map keys at every level, which is serde_json without
		// preserve_order; "alg" and "enc" sort first anyway.
		var m map[string]any
		if err := json.Unmarshal(header, &m); err != nil {
			t.Fatal(err)
		}
		sorted, _ := json.Marshal(m)
		// Insertion order: the bytes as written must already be compact JSON in reading order.
		var compact bytes.Buffer
		_ = json.Compact(&compact, header)
		if !bytes.Equal(sorted, header) || !bytes.Equal(compact.Bytes(), header) || !bytes.HasPrefix(header, []byte(`{"alg":`)) {
			t.Errorf("%s: header %s would be reserialized as %s", name, header, sorted)
		}
	}
}

// go-jose (an independent RFC 7516/7518 implementation) reads what Seal writes, and Open reads
// what go-jose writes: same Concat KDF parameters, key wrap and AAD.
func TestJWEInteropWithGoJose(t *testing.T) {
	for name, k := range testKeys(t) {
		t.Run(name, func(t *testing.T) {
			var priv any = k.rsa
			var pub any
			alg := jose.RSA_OAEP_256
			if k.ec != nil {
				d := new(big.Int).SetBytes(k.ec.Bytes())
				x, y := elliptic.P256().ScalarBaseMult(k.ec.Bytes())
				ek := &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, D: d}
				priv, pub, alg = ek, &ek.PublicKey, jose.ECDH_ES_A256KW
			} else {
				pub = &k.rsa.PublicKey
			}
			sealed, err := Seal(k.Public(), []byte("to go-jose"))
			if err != nil {
				t.Fatal(err)
			}
			obj, err := jose.ParseEncryptedJSON(string(sealed), []jose.KeyAlgorithm{alg}, []jose.ContentEncryption{jose.A256GCM})
			if err != nil {
				t.Fatal(err)
			}
			pt, err := obj.Decrypt(priv)
			if err != nil || string(pt) != "to go-jose" {
				t.Fatalf("go-jose decrypt: %q %v", pt, err)
			}
			enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: pub}, nil)
			if err != nil {
				t.Fatal(err)
			}
			jwe, err := enc.Encrypt([]byte("from go-jose"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err = k.Open([]byte(jwe.FullSerialize()))
			if err != nil || string(pt) != "from go-jose" {
				t.Fatalf("open go-jose JWE: %q %v", pt, err)
			}
		})
	}
}

func TestHashAlgorithmNegotiation(t *testing.T) {
	for extra, want := range map[string]string{``: "sha384", `""`: "sha384", `{}`: "sha384",
		`{"selected-hash-algorithm":"SHA512"}`: "sha512"} {
		got, err := ChallengeHashAlgorithm(json.RawMessage(extra))
		if err != nil || got != want {
			t.Errorf("%s: %q %v", extra, got, err)
		}
	}
	if _, err := ChallengeHashAlgorithm(json.RawMessage(`{"selected-hash-algorithm":"sm3"}`)); err == nil {
		t.Error("sm3 accepted")
	}
	if err := RequestHashAlgorithms(json.RawMessage(`{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}`)); err != nil {
		t.Error(err)
	}
}

func TestPins(t *testing.T) {
	for _, p := range []string{"", "sha256:", "sha1:" + strings.Repeat("a", 40), "sha256:" + strings.Repeat("g", 64)} {
		if _, err := ParsePin(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	if _, err := NewClient(ClientConfig{URL: "https://127.0.0.1:1", TEE: attestation.Sim, Evidence: func(context.Context, [64]byte) ([]byte, error) { return nil, nil }}); err == nil {
		t.Error("client without pin or CA")
	}
}
