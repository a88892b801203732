package collateral

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/sgx"
	"github.com/inclavare-containers/inclavare-go/attestation/tdx"
)

// Intel's public services.
const (
	// PCSURL is Intel's Provisioning Certification Service.
	PCSURL = "https://api.trustedservices.intel.com"
	// PCSRootCRLURL is where Intel publishes the SGX Root CA's CRL (DER).
	PCSRootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
)

// Response headers of the PCS v4 API that carry the issuer chains (URL-encoded PEM).
const (
	headerTCBInfoChain    = "TCB-Info-Issuer-Chain"
	headerQEIdentityChain = "SGX-Enclave-Identity-Issuer-Chain"
	headerPCKCRLChain     = "SGX-PCK-CRL-Issuer-Chain"
	headerPCKCertChain    = "SGX-PCK-Certificate-Issuer-Chain"
)

// errNotFound is wrapped when the service does not have the document (404).
var errNotFound = errors.New("not found")

// rootCRLPath is where a PCCS serves the root CA CRL, and the cache's name for it wherever it came from.
const rootCRLPath = "/sgx/certification/v4/rootcacrl"

// maxResponse bounds one response body: real collateral is a few KiB to a few hundred KiB.
const maxResponse = 8 << 20

// Intel fetches DCAP collateral for SGX and TDX quotes from Intel PCS (API v4) or a PCCS, which
// serves the same paths.
type Intel struct {
	// BaseURL is PCSURL or a PCCS's base URL (as sgx_default_qcnl.conf's pccs_url, without the
	// /sgx/certification/v4 part).
	BaseURL string
	// RootCRLURL is the SGX Root CA CRL; empty: PCSRootCRLURL for Intel PCS, and the PCCS's own
	// /sgx/certification/v4/rootcacrl otherwise.
	RootCRLURL string
	// APIKey is the PCS subscription key (Ocp-Apim-Subscription-Key), needed only for pckcert.
	APIKey string
	Fetcher
}

// Fetcher gets documents over HTTPS through the cache.
type Fetcher struct {
	// Client makes the requests; nil means a client with a 30 s timeout and the system's roots.
	Client *http.Client
	// Cache, when set, keeps responses until they expire; Offline uses nothing else.
	Cache   *Cache
	Offline bool
}

var _ attestation.CollateralSource = (*Intel)(nil)

// Collateral implements attestation.CollateralSource for SGX and TDX quotes: the TCB info for the
// platform's FMSPC, the QE identity, the PCK CRL of the PCK certificate's CA and the root CA CRL,
// each with its issuer chain; for a quote that names its platform by an encrypted PPID, first its
// PCK certificate.
func (s *Intel) Collateral(ctx context.Context, tee attestation.TEE, evidence []byte, opts attestation.Options) ([][]byte, error) {
	var sd *abi.SignatureData
	kind := "sgx"
	switch tee {
	case attestation.SGX:
		q, err := sgx.ParseQuote(evidence, true)
		if err != nil {
			return nil, err
		}
		sd = q.Signature
	case attestation.TDX:
		q, err := tdx.ParseQuote(evidence, true)
		if err != nil {
			return nil, err
		}
		sd, kind = q.Signature, "tdx"
	default:
		return nil, nil // not Intel's
	}
	var out [][]byte
	var pck *x509.Certificate
	if sd.Certification.Type == abi.CertDataPCKCertChain {
		chain, err := sd.Certification.PCKChain()
		if err != nil {
			return nil, err
		}
		pck = chain[0]
	} else {
		cert, files, err := s.pckCertificate(ctx, sd.Certification, opts.Time())
		if err != nil {
			return nil, err
		}
		pck, out = cert, append(out, files...)
	}
	ext, err := abi.PCKExtensionFromCertificate(pck)
	if err != nil {
		return nil, err
	}
	ca := "platform"
	if pck.Issuer.CommonName == "Intel SGX PCK Processor CA" {
		ca = "processor"
	}
	base := strings.TrimRight(s.BaseURL, "/")
	for _, r := range []struct {
		path, chain string
	}{
		{fmt.Sprintf("/%s/certification/v4/tcb?fmspc=%X", kind, ext.FMSPC), headerTCBInfoChain},
		{"/" + kind + "/certification/v4/qe/identity", headerQEIdentityChain},
		{"/sgx/certification/v4/pckcrl?ca=" + ca + "&encoding=der", headerPCKCRLChain},
	} {
		files, err := s.fetch(ctx, r.path, base+r.path, r.chain, nil, opts.Time())
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	rootCRL := s.RootCRLURL
	if rootCRL == "" {
		rootCRL = PCSRootCRLURL
		if base != PCSURL {
			rootCRL = base + rootCRLPath
		}
	}
	files, err := s.fetch(ctx, rootCRLPath, rootCRL, "", nil, opts.Time())
	if err != nil {
		return nil, err
	}
	return append(out, files...), nil
}

// pckCertificate fetches the PCK certificate for PPID certification data (pckcert).
func (s *Intel) pckCertificate(ctx context.Context, cd abi.CertificationData, now time.Time) (*x509.Certificate, [][]byte, error) {
	var size int
	param := "encrypted_ppid"
	switch cd.Type {
	case abi.CertDataPPIDRSA3072:
		size = 384
	case abi.CertDataPPIDRSA2048:
		size = 256
	case abi.CertDataPPIDCleartext:
		size, param = 16, "ppid"
	default:
		_, err := cd.PCKChain()
		return nil, nil, err
	}
	if len(cd.Data) != size+20 {
		return nil, nil, fmt.Errorf("certification data type %d: %d bytes, want %d", cd.Type, len(cd.Data), size+20)
	}
	d := cd.Data
	q := url.Values{}
	q.Set(param, hex.EncodeToString(d[:size]))
	q.Set("cpusvn", hex.EncodeToString(d[size:size+16]))
	q.Set("pcesvn", hex.EncodeToString(d[size+16:size+18]))
	q.Set("pceid", hex.EncodeToString(d[size+18:size+20]))
	path := "/sgx/certification/v4/pckcert?" + q.Encode()
	u := strings.TrimRight(s.BaseURL, "/") + path
	var hdr http.Header
	if s.APIKey != "" {
		hdr = http.Header{"Ocp-Apim-Subscription-Key": {s.APIKey}}
	}
	files, err := s.fetch(ctx, path, u, headerPCKCertChain, hdr, now)
	if err != nil {
		return nil, nil, err
	}
	certs, err := attestation.ParsePEMCertificates(bytes.TrimRight(files[0], "\x00"))
	if err != nil || len(certs) != 1 {
		return nil, nil, fmt.Errorf("pckcert response from %s is not one PEM certificate", redact(u))
	}
	return certs[0], files, nil
}

// fetch returns the document at u (and the issuer chain from header chain, if named), from the
// cache while it is current, else from the network (unless offline), caching it until the
// document's own expiry. The cache knows it by key, the API path: the documents are signed, so
// the same path from Intel PCS or any PCCS is the same resource.
func (s *Fetcher) fetch(ctx context.Context, key, u, chain string, hdr http.Header, now time.Time) ([][]byte, error) {
	if e, err := s.Cache.get(key, now); err == nil {
		return documents(e.Body, e.Chain), nil
	} else if s.Offline {
		return nil, fmt.Errorf("offline: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redact(u), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redact(u), err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", redact(u), maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		msg := resp.Header.Get("Error-Code")
		if m := resp.Header.Get("Error-Message"); m != "" {
			msg += " " + m
		}
		err := fmt.Errorf("GET %s: %s %s", redact(u), resp.Status, strings.TrimSpace(msg))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", errNotFound, err)
		}
		return nil, err
	}
	var chainPEM string
	if chain != "" {
		if chainPEM, err = url.QueryUnescape(resp.Header.Get(chain)); err != nil || chainPEM == "" {
			return nil, fmt.Errorf("GET %s: no usable %s header", redact(u), chain)
		}
	}
	// PCCS serves the root CA CRL as hex text of its DER.
	if t := bytes.TrimSpace(body); len(t) > 0 && len(t)%2 == 0 {
		if d, err := hex.DecodeString(string(t)); err == nil {
			body = d
		}
	}
	files := documents(body, chainPEM)
	// What cannot be parsed is refused now, not cached: it would fail every later verification.
	col, err := abi.ParseCollateral(files)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redact(u), err)
	}
	if err := s.Cache.put(key, body, chainPEM, expiry(col), now); err != nil {
		return nil, err
	}
	return files, nil
}

// documents is a response body and its issuer chain as collateral files.
func documents(body []byte, chainPEM string) [][]byte {
	out := [][]byte{body}
	if chainPEM != "" {
		out = append(out, []byte(chainPEM))
	}
	return out
}

// expiry is when the earliest of a response's documents stops being current.
func expiry(c *abi.Collateral) time.Time {
	var t time.Time
	note := func(x time.Time) {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	for _, ti := range c.TCBInfos {
		note(ti.NextUpdate)
	}
	for _, qi := range c.QEIdentities {
		note(qi.NextUpdate)
	}
	for _, crl := range c.CRLs {
		note(crl.NextUpdate)
	}
	for _, cert := range c.Certificates {
		note(cert.NotAfter)
	}
	return t
}

// redact keeps a PPID out of error messages and logs.
func redact(u string) string {
	if i := strings.Index(u, "?"); i >= 0 && strings.Contains(u[i:], "ppid=") {
		return u[:i] + "?…"
	}
	return u
}
