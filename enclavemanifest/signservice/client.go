package signservice

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// DefaultTimeout bounds one request to a signing service when ClientOptions.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// maxCertFileSize bounds a CA certificate file.
const maxCertFileSize = 4 << 20

// ClientOptions configure a Client (the shim's [signing.service] section).
type ClientOptions struct {
	// URL is the service's https:// URL. http:// is refused.
	URL string
	// ClientCertFile and ClientKeyFile are this client's PEM certificate (chain) and key:
	// the service signs only for clients it authenticates.
	ClientCertFile, ClientKeyFile string
	// CACertFile holds PEM CA certificates for the service's certificate; empty means the
	// system roots.
	CACertFile string
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Client has a remote signing service sign manifests, over HTTPS with a client certificate
// (TLS 1.3 only). It implements enclavemanifest.Signer.
type Client struct {
	url    string
	client *http.Client

	mu sync.Mutex
	id *enclavemanifest.Identity
}

// NewClient checks the options and prepares the client; it does not contact the service yet.
func NewClient(opts ClientOptions) (*Client, error) {
	if err := checkServiceURL(opts.URL); err != nil {
		return nil, err
	}
	if opts.ClientCertFile == "" || opts.ClientKeyFile == "" {
		return nil, errors.New("signing service: a client certificate and key are required (the service must know who asks for signatures)")
	}
	cert, err := tls.LoadX509KeyPair(opts.ClientCertFile, opts.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("signing service client certificate: %w", err)
	}
	var roots *x509.CertPool
	if opts.CACertFile != "" {
		if roots, err = attestation.LoadCertPool(opts.CACertFile); err != nil {
			return nil, fmt.Errorf("signing service CA: %w", err)
		}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("signing service timeout %v is negative", timeout)
	}
	transport := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			RootCAs:      roots,
		},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: timeout,
		MaxIdleConns:        2,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		url: opts.URL,
		client: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			// A redirect could lead anywhere, plain HTTP included: never follow one.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errors.New("the signing service redirected; redirects are not followed")
			},
		},
	}, nil
}

// checkServiceURL accepts only an https URL with a host and without credentials, query or
// fragment.
func checkServiceURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return errors.New("signing service: no URL")
	case err != nil:
		return fmt.Errorf("signing service URL: %w", err)
	case u.Scheme == "http":
		return fmt.Errorf("signing service URL %q: plain http:// is refused; the service must be reached over https:// with a client certificate", raw)
	case u.Scheme != "https":
		return fmt.Errorf("signing service URL %q: scheme %q is not https", raw, u.Scheme)
	case u.Hostname() == "":
		return fmt.Errorf("signing service URL %q has no host", raw)
	case u.User != nil:
		return errors.New("signing service URL must not carry credentials; authenticate with a client certificate")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("signing service URL %q must not have a query or fragment", raw)
	}
	return nil
}

// Identity asks the service which key it signs with (once; the answer is kept).
func (s *Client) Identity(ctx context.Context) (enclavemanifest.Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id != nil {
		return *s.id, nil
	}
	body, err := s.do(ctx, http.MethodGet, nil)
	if err != nil {
		return enclavemanifest.Identity{}, err
	}
	var info keyInfo
	if err := strictjson.DecodeLowerCase(body, &info); err != nil {
		return enclavemanifest.Identity{}, fmt.Errorf("signing service %s: key description: %w", s.url, err)
	}
	id, err := info.identity()
	if err != nil {
		return enclavemanifest.Identity{}, fmt.Errorf("signing service %s: %w", s.url, err)
	}
	s.id = &id
	return id, nil
}

func (k *keyInfo) identity() (enclavemanifest.Identity, error) {
	der, err := strictBase64.DecodeString(k.PublicKey)
	if err != nil {
		return enclavemanifest.Identity{}, fmt.Errorf("key description: public_key is not base64: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return enclavemanifest.Identity{}, fmt.Errorf("key description: public_key: %v", err)
	}
	alg, err := enclavemanifest.AlgorithmFor(pub)
	if err != nil {
		return enclavemanifest.Identity{}, fmt.Errorf("key description: %w", err)
	}
	id, err := enclavemanifest.KeyID(pub)
	if err != nil {
		return enclavemanifest.Identity{}, err
	}
	// The announced id and algorithm must be the key's, so a service cannot name one key and
	// sign with another.
	if id != k.KeyID || alg != k.Algorithm {
		return enclavemanifest.Identity{}, fmt.Errorf("key description: announces key id %s (%s) for a key whose id is %s (%s)", clip(k.KeyID), clip(k.Algorithm), id, alg)
	}
	return enclavemanifest.Identity{KeyID: id, Algorithm: alg, PublicKey: pub}, nil
}

// Sign has the service sign SignatureInput(payload).
func (s *Client) Sign(ctx context.Context, payload []byte) ([]byte, error) {
	id, err := s.Identity(ctx)
	if err != nil {
		return nil, err
	}
	req, err := strictjson.Encode(signRequest{Payload: strictBase64.EncodeToString(payload), Digest: enclavemanifest.PayloadDigest(payload)})
	if err != nil {
		return nil, err
	}
	body, err := s.do(ctx, http.MethodPost, req)
	if err != nil {
		return nil, err
	}
	var resp signResponse
	if err := strictjson.DecodeLowerCase(body, &resp); err != nil {
		return nil, fmt.Errorf("signing service %s: response: %w", s.url, err)
	}
	if resp.KeyID != id.KeyID || resp.Algorithm != id.Algorithm {
		return nil, fmt.Errorf("signing service %s signed with key %s (%s), but announced %s (%s)", s.url, clip(resp.KeyID), clip(resp.Algorithm), id.KeyID, id.Algorithm)
	}
	sig, err := strictBase64.DecodeString(resp.Signature)
	if err != nil {
		return nil, fmt.Errorf("signing service %s: signature is not base64: %w", s.url, err)
	}
	if err := enclavemanifest.VerifySignature(id.Algorithm, id.PublicKey, payload, sig); err != nil {
		return nil, fmt.Errorf("signing service %s returned a signature that does not verify with its key %s: %w", s.url, id.KeyID, err)
	}
	return sig, nil
}

// do sends one request and returns the body of a 200 answer; any other answer is an error
// carrying the service's message.
func (s *Client) do(ctx context.Context, method string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url, rd)
	if err != nil {
		return nil, fmt.Errorf("signing service request: %w", err)
	}
	req.Header.Set("Accept", contentTypeJSON)
	if body != nil {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("signing service %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxServiceResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("signing service %s: read response: %w", s.url, err)
	}
	if len(data) > maxServiceResponseSize {
		return nil, fmt.Errorf("signing service %s: response larger than %d bytes", s.url, maxServiceResponseSize)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(data))
		var se serviceError
		if strictjson.DecodeLowerCase(data, &se) == nil && se.Error != "" {
			msg = se.Error
		}
		return nil, fmt.Errorf("signing service %s refused (%s): %q", s.url, resp.Status, clip(msg))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, contentTypeJSON) {
		return nil, fmt.Errorf("signing service %s answered with content type %q, not JSON", s.url, ct)
	}
	return data, nil
}
