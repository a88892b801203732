package signservice

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// FuzzHandler sends arbitrary request bodies to the signing service as an authenticated
// client: no panic, and a 200 answer only for a payload that is a valid manifest for the
// service's key, with a signature that verifies.
func FuzzHandler(f *testing.F) {
	key := ed25519TestKey()
	h, err := NewHandler(mustKeySigner(f, key), nil)
	if err != nil {
		f.Fatal(err)
	}
	p := payloadOf(f, mustSign(f, sampleManifest(), mustKeySigner(f, key)))
	good, _ := strictjson.Encode(signRequest{Payload: strictBase64.EncodeToString(p), Digest: enclavemanifest.PayloadDigest(p)})
	f.Add(good)
	f.Add([]byte(`{"payload":"e30=","digest":"sha256:00"}`))
	f.Add([]byte(`{}`))
	ca := testpki.NewCA(f, "fuzz")
	client := ca.Client(f, "fuzz-client")
	state := &tls.ConnectionState{Version: tls.VersionTLS13, VerifiedChains: [][]*x509.Certificate{{client.Cert, ca.Cert}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/sign", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.TLS = state
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return
		}
		var sreq signRequest
		if err := strictjson.DecodeLowerCase(body, &sreq); err != nil {
			t.Fatalf("signed a request that does not decode: %v", err)
		}
		payload, err := strictBase64.DecodeString(sreq.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enclavemanifest.ParsePayload(payload); err != nil {
			t.Fatalf("signed a payload that is not a manifest: %v", err)
		}
		var resp signResponse
		if err := strictjson.DecodeLowerCase(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		sig, err := strictBase64.DecodeString(resp.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if err := enclavemanifest.VerifySignature(enclavemanifest.AlgEd25519, key.Public(), payload, sig); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzKeyDescription feeds arbitrary answers to the client's reading of GET <url>: errors,
// never a panic, and an accepted description is self-consistent.
func FuzzKeyDescription(f *testing.F) {
	h, err := NewHandler(mustKeySigner(f, ed25519TestKey()), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h.info)
	f.Add([]byte(`{"key_id":"sha256:00","algorithm":"ed25519","public_key":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var info keyInfo
		if strictjson.DecodeLowerCase(data, &info) != nil {
			return
		}
		id, err := info.identity()
		if err != nil {
			return
		}
		kid, _ := enclavemanifest.KeyID(id.PublicKey)
		if kid != id.KeyID {
			t.Fatalf("accepted key id %s for key %s", id.KeyID, kid)
		}
	})
}
