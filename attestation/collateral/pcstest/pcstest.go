// Package pcstest stands in for Intel PCS (and a PCCS) and AMD KDS in tests, on loopback: these machines
// cannot reach Intel. It serves recorded real collateral from the repository's test data (or
// whatever a test adds) at the real API v4 paths, with the issuer-chain headers as URL-encoded
// PEM, the status codes and Error-Code/Error-Message headers of the real service, and records
// every request. For tests only.
package pcstest

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// Response headers of the PCS v4 API that carry issuer chains.
const (
	HeaderTCBInfoChain    = "TCB-Info-Issuer-Chain"
	HeaderQEIdentityChain = "SGX-Enclave-Identity-Issuer-Chain"
	HeaderPCKCRLChain     = "SGX-PCK-CRL-Issuer-Chain"
	HeaderPCKCertChain    = "SGX-PCK-Certificate-Issuer-Chain"
)

// Doc is one response: its body and, when Header is set, the issuer chain (PEM) in that header.
type Doc struct {
	Body        []byte
	Header, PEM string
	// APIKey, when set, must arrive as Ocp-Apim-Subscription-Key (else 401), as PCS requires for pckcert.
	APIKey string
}

// Server is the stand-in service.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	docs     map[string]Doc
}

// New starts a server serving docs (keyed by "path" or "path?query" exactly as clients send it).
func New(t testing.TB, docs map[string]Doc) *Server {
	t.Helper()
	s := &Server{docs: docs}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Path
	if r.URL.RawQuery != "" {
		key += "?" + r.URL.RawQuery
	}
	s.mu.Lock()
	s.requests = append(s.requests, key)
	d, ok := s.docs[key]
	s.mu.Unlock()
	switch {
	case !ok:
		w.Header().Set("Error-Code", "NotFound")
		w.Header().Set("Error-Message", "No cache data for this request")
		w.WriteHeader(http.StatusNotFound)
		return
	case d.APIKey != "" && r.Header.Get("Ocp-Apim-Subscription-Key") != d.APIKey:
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if d.Header != "" {
		w.Header().Set(d.Header, url.QueryEscape(d.PEM))
	}
	w.Write(d.Body)
}

// Set adds or replaces the response at key.
func (s *Server) Set(key string, d Doc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.docs[key] = d
}

// Requests returns the requests since the last call, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.requests
	s.requests = nil
	return out
}

// Recorded is the real collateral in the repository's test data at the paths a PCCS serves it:
// the SGX sample's FMSPC 00606A000000 and the TDX SPR E4 sample's 50806F000000 (go-tdx-guest's
// recording), their QE identities, the platform CA's PCK CRL and the root CA CRL (as hex text, as
// PCCS serves it).
func Recorded(t testing.TB) map[string]Doc {
	t.Helper()
	read := func(rel string) []byte {
		b, err := os.ReadFile(filepath.Join(testdata.Attestation(t), rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tcbChain := string(read("sgx/oasis_tcb_signing_chain.pem"))
	return map[string]Doc{
		"/sgx/certification/v4/tcb?fmspc=00606A000000": {Body: read("sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"), Header: HeaderTCBInfoChain, PEM: tcbChain},
		"/tdx/certification/v4/tcb?fmspc=50806F000000": {Body: read("tdx/gotdx_tcbinfo_tdx_v3_fmspc_50806f000000.json"), Header: HeaderTCBInfoChain, PEM: tcbChain},
		"/sgx/certification/v4/qe/identity":            {Body: read("sgx/oasis_qeidentity_qe_v2.json"), Header: HeaderQEIdentityChain, PEM: tcbChain},
		"/tdx/certification/v4/qe/identity":            {Body: read("tdx/gotdx_qeidentity_td_qe_2023-06.json"), Header: HeaderQEIdentityChain, PEM: tcbChain},
		"/sgx/certification/v4/pckcrl?ca=platform&encoding=der": {Body: read("tdx/gotdx_pck_crl_platform_2023-06-08.der"), Header: HeaderPCKCRLChain,
			PEM: string(read("roots/oasis_intel_pck_platform_ca_chain.pem"))},
		"/sgx/certification/v4/rootcacrl": {Body: []byte(hex.EncodeToString(read("roots/gotdx_intel_sgx_root_ca_crl_2023-04-03.der")))},
	}
}
