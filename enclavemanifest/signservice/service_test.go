package signservice

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
)

// signingFixture is a signing service on loopback with mutual TLS, and the files a client needs.
type signingFixture struct {
	url                        string
	dir                        string
	caFile                     string // the CA of the service's certificate and of clients
	clientCert, clientKey      string // a client the service accepts
	strangerCert, strangerKey  string // a client from another CA
	pub                        crypto.PublicKey
	logs                       *syncBuffer
	serverCA                   *x509.CertPool
	clientTLS, strangerTLSCert tls.Certificate
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newSigningFixture(t *testing.T, handler func(*Handler) http.Handler) *signingFixture {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "signing")
	stranger := testpki.NewCA(t, "stranger")
	f := &signingFixture{dir: dir, caFile: ca.WriteCA(t, dir), logs: &syncBuffer{}}
	serverCert, serverKey := ca.Server(t, "signer").Write(t, dir)
	f.clientCert, f.clientKey = ca.Client(t, "shim-node-1").Write(t, dir)
	f.strangerCert, f.strangerKey = stranger.Client(t, "intruder").Write(t, dir)

	key := mustKeySigner(t, ed25519TestKey())
	f.pub = ed25519TestKey().Public()
	svc, err := NewHandler(key, slog.New(slog.NewJSONHandler(f.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := ServerTLSConfig(serverCert, serverKey, f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = svc
	if handler != nil {
		h = handler(svc)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = tlsConf
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/v1/sign"
	f.serverCA = x509.NewCertPool()
	f.serverCA.AddCert(ca.Cert)
	if f.clientTLS, err = tls.LoadX509KeyPair(f.clientCert, f.clientKey); err != nil {
		t.Fatal(err)
	}
	if f.strangerTLSCert, err = tls.LoadX509KeyPair(f.strangerCert, f.strangerKey); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *signingFixture) signer(t *testing.T) *Client {
	t.Helper()
	s, err := NewClient(ClientOptions{URL: f.url, ClientCertFile: f.clientCert, ClientKeyFile: f.clientKey, CACertFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawClient makes requests with the given client certificates (none: unauthenticated).
func (f *signingFixture) rawClient(maxVersion uint16, certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: f.serverCA, Certificates: certs, MaxVersion: maxVersion,
	}}}
}

func TestSigningServiceEndToEnd(t *testing.T) {
	f := newSigningFixture(t, nil)
	s := f.signer(t)
	data, err := enclavemanifest.Sign(context.Background(), sampleManifest(), s)
	if err != nil {
		t.Fatalf("Sign through the service: %v", err)
	}
	m, err := enclavemanifest.Verify(data, trustFor(t, f.pub))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if m.Signer.Algorithm != enclavemanifest.AlgEd25519 || m.Signer.Ephemeral {
		t.Fatalf("signer %+v", m.Signer)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"msg":"signed enclave manifest"`) || !strings.Contains(logs, "CN=shim-node-1") || !strings.Contains(logs, m.Measurement) {
		t.Fatalf("the service did not log the signature with the client and measurement:\n%s", logs)
	}
	// A second manifest reuses the identity fetched once.
	if _, err := enclavemanifest.Sign(context.Background(), sampleManifest(), s); err != nil {
		t.Fatal(err)
	}
}

func TestSigningServiceRefusesUnauthenticatedClients(t *testing.T) {
	f := newSigningFixture(t, nil)
	body := mustJSON(t, signRequest{Payload: "e30=", Digest: enclavemanifest.PayloadDigest([]byte("{}"))})
	tests := []struct {
		name   string
		client *http.Client
	}{
		{"no client certificate", f.rawClient(0)},
		{"certificate from another CA", f.rawClient(0, f.strangerTLSCert)},
		{"TLS 1.2", f.rawClient(tls.VersionTLS12, f.clientTLS)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				req, _ := http.NewRequest(method, f.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := tc.client.Do(req)
				if err == nil {
					resp.Body.Close()
					t.Fatalf("%s answered %s", method, resp.Status)
				}
			}
		})
	}
	// The same refusals through Client: a stranger's certificate gets no signature.
	s, err := NewClient(ClientOptions{URL: f.url, ClientCertFile: f.strangerCert, ClientKeyFile: f.strangerKey, CACertFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enclavemanifest.Sign(context.Background(), sampleManifest(), s); err == nil {
		t.Fatal("a client from another CA got a signature")
	}
	// Plain HTTP to the TLS port gets nothing either.
	resp, err := http.Get(strings.Replace(f.url, "https://", "http://", 1))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain HTTP answered 200: %s", b)
		}
	}
	if strings.Contains(f.logs.String(), "signed enclave manifest") {
		t.Fatal("the service signed something for an unauthenticated client")
	}
}

func TestSigningServiceRefusesBadRequests(t *testing.T) {
	f := newSigningFixture(t, nil)
	client := f.rawClient(0, f.clientTLS)
	other := mustKeySigner(t, otherKey())
	foreign := payloadOf(t, mustSign(t, sampleManifest(), other))
	own := payloadOf(t, mustSign(t, sampleManifest(), mustKeySigner(t, ed25519TestKey())))
	ephemeral, _ := enclavemanifest.NewEphemeralSigner()
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		status      int
		msg         string
	}{
		{"oversized", "POST", "application/json", bytes.Repeat([]byte("a"), MaxRequestSize+1), http.StatusRequestEntityTooLarge, "larger than"},
		{"wrong content type", "POST", "text/plain", mustJSON(t, signRequest{Payload: b64(own), Digest: enclavemanifest.PayloadDigest(own)}), http.StatusUnsupportedMediaType, "application/json"},
		{"not JSON", "POST", "application/json", []byte("sign this"), http.StatusBadRequest, "request"},
		{"unknown member", "POST", "application/json", []byte(`{"payload":"e30=","digest":"x","key":"k"}`), http.StatusBadRequest, "unknown field"},
		{"digest mismatch", "POST", "application/json", mustJSON(t, signRequest{Payload: b64(own), Digest: enclavemanifest.PayloadDigest([]byte("other"))}), http.StatusBadRequest, "does not match the payload"},
		{"not a manifest", "POST", "application/json", mustJSON(t, signRequest{Payload: b64([]byte(`{"hello":1}`)), Digest: enclavemanifest.PayloadDigest([]byte(`{"hello":1}`))}), http.StatusBadRequest, "malformed"},
		{"names another key", "POST", "application/json", mustJSON(t, signRequest{Payload: b64(foreign), Digest: enclavemanifest.PayloadDigest(foreign)}), http.StatusBadRequest, "this service signs with"},
		{"names an ephemeral key", "POST", "application/json", signRequestFor(t, payloadOf(t, mustSign(t, sampleManifest(), ephemeral))), http.StatusBadRequest, "ephemeral true"},
		{"method", "DELETE", "", nil, http.StatusMethodNotAllowed, "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, f.url, bytes.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.msg) {
				t.Fatalf("got %s %s, want %d and %q", resp.Status, b, tc.status, tc.msg)
			}
		})
	}
	// Oversized without a declared length (chunked): cut off while reading.
	req, _ := http.NewRequest("POST", f.url, io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("a"), MaxRequestSize+1))))
	req.Header.Set("Content-Type", "application/json")
	if req.ContentLength != 0 {
		t.Fatalf("request has a length: %d", req.ContentLength)
	}
	resp0, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b0, _ := io.ReadAll(resp0.Body)
	resp0.Body.Close()
	if resp0.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized request: %s %s", resp0.Status, b0)
	}
	// The same request, well-formed, is signed: the refusals above were about their defects.
	resp, err := client.Post(f.url, "application/json", bytes.NewReader(signRequestFor(t, own)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("good request: %s %s", resp.Status, b)
	}
}

func TestClientURLChecks(t *testing.T) {
	tests := []struct{ url, msg string }{
		{"http://signer.example/v1/sign", "plain http:// is refused"},
		{"ftp://signer.example/", `scheme "ftp" is not https`},
		{"https:///v1/sign", "has no host"},
		{"https://user:pw@signer.example/", "must not carry credentials"},
		{"https://signer.example/?k=v", "query or fragment"},
		{"", "no URL"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := NewClient(ClientOptions{URL: tc.url, ClientCertFile: "/c", ClientKeyFile: "/k"})
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	if _, err := NewClient(ClientOptions{URL: "https://signer.example/"}); err == nil || !strings.Contains(err.Error(), "client certificate and key are required") {
		t.Fatalf("no client certificate: %v", err)
	}
}

// A service that misbehaves (announces one key, signs with another; redirects; answers
// with garbage) never yields a manifest.
func TestClientDistrustsTheService(t *testing.T) {
	other := mustKeySigner(t, otherKey())
	otherID, _ := other.Identity(context.Background())
	tests := []struct {
		name string
		wrap func(*Handler) http.Handler
		msg  string
	}{
		{"signs with another key", func(s *Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					var req signRequest
					json.NewDecoder(r.Body).Decode(&req)
					payload, _ := strictBase64.DecodeString(req.Payload)
					sig, _ := other.Sign(r.Context(), payload)
					s.reply(w, 200, mustJSON(t, signResponse{Signature: b64(sig), KeyID: s.id.KeyID, Algorithm: s.id.Algorithm}))
					return
				}
				s.ServeHTTP(w, r)
			})
		}, "does not verify"},
		{"names another key", func(s *Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					s.reply(w, 200, mustJSON(t, signResponse{Signature: "AA==", KeyID: otherID.KeyID, Algorithm: otherID.Algorithm}))
					return
				}
				s.ServeHTTP(w, r)
			})
		}, "but announced"},
		{"inconsistent key description", func(s *Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var info keyInfo
				json.Unmarshal(s.info, &info)
				info.KeyID = otherID.KeyID
				s.reply(w, 200, mustJSON(t, info))
			})
		}, "key id"},
		{"redirects", func(s *Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusTemporaryRedirect)
			})
		}, "redirects are not followed"},
		{"not JSON", func(s *Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprint(w, "<html>")
			})
		}, "not JSON"},
		{"error message", func(s *Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.reply(w, http.StatusForbidden, mustJSON(t, serviceError{Error: "policy: image not allowed"}))
			})
		}, `403 Forbidden): "policy: image not allowed"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newSigningFixture(t, tc.wrap)
			_, err := enclavemanifest.Sign(context.Background(), sampleManifest(), f.signer(t))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}

func TestServiceTLSConfigRequiresClientCA(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "x")
	cert, key := ca.Server(t, "s").Write(t, dir)
	if _, err := ServerTLSConfig(cert, key, ""); err == nil || !strings.Contains(err.Error(), "client CA file is required") {
		t.Fatalf("no client CA: %v", err)
	}
	if _, err := ServerTLSConfig(cert, key, key); err == nil || !strings.Contains(err.Error(), "not a CERTIFICATE") {
		t.Fatalf("key as client CA: %v", err)
	}
	conf, err := ServerTLSConfig(cert, key, ca.WriteCA(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if conf.MinVersion != tls.VersionTLS13 || conf.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("TLS config %+v", conf)
	}
}

// The handler refuses requests that reached it without a verified client certificate, even
// if it were mounted behind a listener that does not require one.
func TestSigningServiceHandlerChecksClientItself(t *testing.T) {
	svc, err := NewHandler(mustKeySigner(t, ed25519TestKey()), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(svc)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("got %s, want 401", resp.Status)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return strictBase64.EncodeToString(b) }

func signRequestFor(t *testing.T, payload []byte) []byte {
	return mustJSON(t, signRequest{Payload: b64(payload), Digest: enclavemanifest.PayloadDigest(payload)})
}

func TestHandlerRefusesEphemeralKey(t *testing.T) {
	eph, err := enclavemanifest.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewHandler(eph, nil); err == nil || !strings.Contains(err.Error(), "ephemeral") {
		t.Fatalf("got %v", err)
	}
}
