package kbs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/resourceid"
)

// EvidenceFunc produces evidence over 64 bytes of report data (the shape of
// enclavetls.EvidenceFunc): how the client reaches its TEE.
type EvidenceFunc func(ctx context.Context, reportData [attestation.ReportDataSize]byte) ([]byte, error)

// ClientConfig says which broker to trust and how to attest to it.
type ClientConfig struct {
	// URL is the broker's base URL, https://HOST:PORT (the KBS paths are appended).
	URL string
	// TEE is the TEE Evidence produces evidence of.
	TEE      attestation.TEE
	Evidence EvidenceFunc
	// Pin authenticates the broker by its certificate's key: "sha256:<hex of the SHA-256 of its
	// SubjectPublicKeyInfo>". With a pin and no RootCAs, the certificate chain is not checked
	// (the pin is the trust decision).
	Pin string
	// RootCAs, when set, must verify the broker's certificate chain and name (and the pin too,
	// when both are given). One of Pin and RootCAs is required.
	RootCAs *x509.CertPool
	// RSAKeyBits selects an RSA-OAEP-256 TEE key of this size instead of the default P-256
	// ECDH-ES+A256KW key.
	RSAKeyBits int
}

// Client is the guest side of the protocol: it attests with a fresh ephemeral key per handshake,
// keeps the session cookie, and decrypts the resources it fetches. It is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	base string
	http *http.Client

	mu      sync.Mutex
	key     *Key
	session string
	token   string
}

// Error is a refusal from the broker: the HTTP status and trustee's error information.
type Error struct {
	Op     string // "auth", "attest", "resource <path>"
	Status int
	Type   string // the problem type without ErrorTypePrefix ("PolicyDeny", …)
	Detail string
}

func (e *Error) Error() string {
	return fmt.Sprintf("kbs %s: %d %s: %s", e.Op, e.Status, e.Type, e.Detail)
}

// NewClient checks cfg and prepares the HTTPS client. It does not connect.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("kbs client: URL %q: want https://HOST:PORT", cfg.URL)
	}
	if _, err := WireTEE(cfg.TEE); err != nil {
		return nil, fmt.Errorf("kbs client: %w", err)
	}
	if cfg.Evidence == nil {
		return nil, errors.New("kbs client: no evidence function")
	}
	if cfg.RSAKeyBits != 0 && (cfg.RSAKeyBits < minRSABits || cfg.RSAKeyBits > maxRSABits) {
		return nil, fmt.Errorf("kbs client: RSA key of %d bits, want %d to %d", cfg.RSAKeyBits, minRSABits, maxRSABits)
	}
	var pin []byte
	if cfg.Pin != "" {
		if pin, err = ParsePin(cfg.Pin); err != nil {
			return nil, fmt.Errorf("kbs client: %w", err)
		}
	} else if cfg.RootCAs == nil {
		return nil, errors.New("kbs client: the broker must be authenticated: give a pin (sha256:<hex>) or a CA pool")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cfg.RootCAs}
	if cfg.RootCAs == nil {
		// The pin below is the whole trust decision; there is no chain to check.
		tc.InsecureSkipVerify = true
	}
	if pin != nil {
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("kbs client: the broker sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
			if subtle.ConstantTimeCompare(got[:], pin) != 1 {
				return fmt.Errorf("kbs client: the broker's key sha256:%x is not the pinned %s", got, cfg.Pin)
			}
			return nil
		}
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 30 * time.Second,
		MaxIdleConnsPerHost: 2,
	}
	return &Client{cfg: cfg, base: strings.TrimSuffix(u.String(), "/"), http: &http.Client{
		Transport: tr,
		// A broker never redirects; following one would send the cookie elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// ParsePin reads "sha256:<64 hex digits>".
func ParsePin(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("pin %q: want sha256:<64 hex digits of the SHA-256 of the certificate's SubjectPublicKeyInfo>", s)
	}
	return b, nil
}

// PinOf is the pin of a certificate: "sha256:<hex>" of its SubjectPublicKeyInfo.
func PinOf(cert *x509.Certificate) string {
	h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Token is the attestation token of the last successful handshake ("" before one).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Attest runs the handshake with a fresh TEE key: auth (challenge nonce and session cookie), then
// attest (evidence binding the nonce and the key). It returns the broker's attestation token.
func (c *Client) Attest(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attestLocked(ctx)
}

func (c *Client) attestLocked(ctx context.Context) (string, error) {
	c.session, c.token, c.key = "", "", nil
	var key *Key
	var err error
	if c.cfg.RSAKeyBits != 0 {
		key, err = NewRSAKey(c.cfg.RSAKeyBits)
	} else {
		key, err = NewECKey()
	}
	if err != nil {
		return "", err
	}
	tee, _ := WireTEE(c.cfg.TEE)
	req, err := json.Marshal(Request{Version: Version, TEE: tee,
		ExtraParams: json.RawMessage(`{"supported-hash-algorithms":["sha384"]}`)})
	if err != nil {
		return "", err
	}
	resp, body, err := c.do(ctx, http.MethodPost, AuthPath, "", req, 1<<20)
	if err != nil {
		return "", fmt.Errorf("kbs auth: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", refusal("auth", resp, body)
	}
	session := sessionCookie(resp)
	if session == "" {
		return "", errors.New("kbs auth: the broker set no " + CookieName + " cookie")
	}
	var ch Challenge
	if err := json.Unmarshal(body, &ch); err != nil || ch.Nonce == "" {
		return "", fmt.Errorf("kbs auth: the challenge is not {\"nonce\", \"extra-params\"}: %s", truncate(body))
	}
	alg, err := ChallengeHashAlgorithm(ch.ExtraParams)
	if err != nil {
		return "", fmt.Errorf("kbs auth: %w", err)
	}
	rd, err := ReportData(alg, Version, ch.Nonce, key.Public(), "")
	if err != nil {
		return "", err
	}
	ev, err := c.cfg.Evidence(ctx, rd)
	if err != nil {
		return "", fmt.Errorf("kbs attest: evidence: %w", err)
	}
	primary, err := WrapEvidence(c.cfg.TEE, ev)
	if err != nil {
		return "", fmt.Errorf("kbs attest: %w", err)
	}
	att, err := json.Marshal(Attestation{RuntimeData: RuntimeData{Nonce: ch.Nonce, TEEPubKey: key.Public()},
		TEEEvidence: CompositeEvidence{Primary: primary}})
	if err != nil {
		return "", err
	}
	resp, body, err = c.do(ctx, http.MethodPost, AttestPath, session, att, 1<<20)
	if err != nil {
		return "", fmt.Errorf("kbs attest: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", refusal("attest", resp, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" {
		return "", fmt.Errorf("kbs attest: the answer is not {\"token\"}: %s", truncate(body))
	}
	if s := sessionCookie(resp); s != "" {
		session = s
	}
	c.session, c.token, c.key = session, tok.Token, key
	return tok.Token, nil
}

// Resource fetches and decrypts the resource at path ("<repository>/<type>/<tag>"), attesting
// first when there is no session, and once more when the broker no longer knows the session
// (it expired).
func (c *Client) Resource(ctx context.Context, path string) ([]byte, error) {
	if err := CheckResourcePath(path); err != nil {
		return nil, fmt.Errorf("kbs resource: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := false
	if c.session == "" {
		if _, err := c.attestLocked(ctx); err != nil {
			return nil, err
		}
		fresh = true
	}
	for {
		resp, body, err := c.do(ctx, http.MethodGet, ResourcePrefix+path, c.session, nil, MaxResponseSize)
		if err != nil {
			return nil, fmt.Errorf("kbs resource %s: %w", path, err)
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			pt, err := c.key.Open(body)
			if err != nil {
				return nil, fmt.Errorf("kbs resource %s: %w", path, err)
			}
			return pt, nil
		case resp.StatusCode == http.StatusUnauthorized && !fresh:
			if _, err := c.attestLocked(ctx); err != nil {
				return nil, err
			}
			fresh = true
		default:
			return nil, refusal("resource "+path, resp, body)
		}
	}
}

func (c *Client) do(ctx context.Context, method, path, session string, body []byte, limit int64) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if session != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: session})
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) > limit {
		return nil, nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return resp, b, nil
}

func sessionCookie(resp *http.Response) string {
	for _, ck := range resp.Cookies() {
		if ck.Name == CookieName && ck.Value != "" {
			return ck.Value
		}
	}
	return ""
}

func refusal(op string, resp *http.Response, body []byte) error {
	e := &Error{Op: op, Status: resp.StatusCode}
	var info ErrorInfo
	if json.Unmarshal(body, &info) == nil && info.Type != "" {
		e.Type = strings.TrimPrefix(info.Type, ErrorTypePrefix)
		e.Detail = info.Detail
	} else {
		e.Detail = truncate(body)
	}
	return e
}

func truncate(b []byte) string {
	const max = 512
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// CheckResourcePath checks "<repository>/<type>/<tag>" (resourceid.Check): that rules
// out "..", hidden files, separators and anything a URL would need to escape.
func CheckResourcePath(p string) error { return resourceid.Check(p) }
