package enclavetls

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
)

// NonceProtocolPrefix starts the ALPN protocol name in which a client sends its nonce: the prefix,
// then the nonce in unpadded base64url. See the package documentation, "Freshness".
const NonceProtocolPrefix = "enclave-tls-nonce:"

// NonceSize is the size of the nonces and challenges this package makes.
const NonceSize = 32

// maxNonceSize bounds a nonce a peer sends (the ALPN name holds at most 255 bytes).
const maxNonceSize = 128

// Config describes one side of an Enclave-TLS connection.
type Config struct {
	// Identity is this side's attested identity. A server must have one; a client without one
	// presents no certificate (it is not attested).
	Identity *Identity
	// Verifier checks the peer. A client must have one; a server with one requires mutual
	// attestation (every client presents an attested certificate).
	Verifier *Verifier
	// NextProtos are the application protocols (ALPN) to offer or accept.
	NextProtos []string
}

// Conn is an Enclave-TLS connection. The handshake runs on first use or by Handshake/
// HandshakeContext; it fails unless the peer's evidence verified and its policy held.
type Conn struct {
	*tls.Conn
	state *connState
}

// Peer returns what the handshake established about the peer, or nil before a successful
// handshake and for a client that the server did not attest.
func (c *Conn) Peer() *Peer {
	if !c.ConnectionState().HandshakeComplete {
		return nil
	}
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	return c.state.peer
}

// connState is what one handshake's callbacks share.
type connState struct {
	mu        sync.Mutex
	nonce     []byte // client: the nonce it sent; server: unused
	challenge []byte // server: the challenge in its certificate; client: the server's challenge
	peer      *Peer
}

func (s *connState) setPeer(p *Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peer = p
}

func randomNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("enclave-tls: nonce: %w", err)
	}
	return n, nil
}

// baseConfig is the TLS configuration both sides share: TLS 1.3 only, no session resumption (a
// resumed session would skip the certificate, and with it the attestation).
func baseConfig(c *Config) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		NextProtos:             slices.Clone(c.NextProtos),
	}
}

// Server is the server side of Enclave-TLS.
type Server struct {
	cfg  Config
	base *tls.Config
}

// NewServer checks cfg and returns a server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Identity == nil {
		return nil, errors.New("enclave-tls server: no identity")
	}
	if cfg.Verifier != nil {
		if err := cfg.Verifier.validate(); err != nil {
			return nil, fmt.Errorf("enclave-tls server: %w", err)
		}
	}
	s := &Server{cfg: cfg, base: baseConfig(&cfg)}
	if cfg.Verifier != nil {
		s.base.ClientAuth = tls.RequireAnyClientCert
	}
	return s, nil
}

// TLSConfig returns a configuration for use with crypto/tls directly (http.Server, …). It attests
// exactly as Server does, but the verified Peer is not retrievable: use Server or Listener for
// that.
func (s *Server) TLSConfig() *tls.Config {
	cfg := s.base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		return s.configForClient(hello, &connState{})
	}
	return cfg
}

// Server wraps an accepted connection.
func (s *Server) Server(conn net.Conn) *Conn {
	st := &connState{}
	cfg := s.base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		return s.configForClient(hello, st)
	}
	return &Conn{Conn: tls.Server(conn, cfg), state: st}
}

// Listener wraps l: Accept returns *Conn values, not yet handshaken (the handshake runs in the
// connection's own goroutine, so a slow peer cannot stall Accept).
func (s *Server) Listener(l net.Listener) net.Listener { return &listener{Listener: l, s: s} }

type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.s.Server(c), nil
}

// configForClient picks this connection's certificate: the cached one, or a fresh one when the
// client sent a nonce or this server will challenge the client.
func (s *Server) configForClient(hello *tls.ClientHelloInfo, st *connState) (*tls.Config, error) {
	nonce, err := nonceFromALPN(hello.SupportedProtos)
	if err != nil {
		return nil, err
	}
	cfg := s.base.Clone()
	var cert *tls.Certificate
	if nonce == nil && (s.cfg.Verifier == nil || !s.cfg.Verifier.RequireFresh) {
		cert, err = s.cfg.Identity.Certificate(hello.Context())
	} else {
		var challenge []byte
		if s.cfg.Verifier != nil && s.cfg.Verifier.RequireFresh {
			if challenge, err = randomNonce(); err != nil {
				return nil, err
			}
			st.mu.Lock()
			st.challenge = challenge
			st.mu.Unlock()
		}
		cert, err = s.cfg.Identity.newCertificate(hello.Context(), nonce, challenge, false)
	}
	if err != nil {
		return nil, err
	}
	cfg.Certificates = []tls.Certificate{*cert}
	if nonce != nil && len(cfg.NextProtos) > 0 {
		// Go's server fails the handshake when it has protocols and none is the client's; let the
		// nonce name match last rather than refuse a client that offered nothing else.
		cfg.NextProtos = append(cfg.NextProtos, nonceProtocol(nonce))
	}
	if v := s.cfg.Verifier; v != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			st.mu.Lock()
			challenge := st.challenge
			st.mu.Unlock()
			p, err := verifyPeer(hello.Context(), v, cs.PeerCertificates, challenge)
			if err != nil {
				return fmt.Errorf("enclave-tls: client attestation: %w", err)
			}
			st.setPeer(p)
			return nil
		}
	}
	return cfg, nil
}

// Client is the client side of Enclave-TLS.
type Client struct {
	cfg  Config
	base *tls.Config
}

// NewClient checks cfg and returns a client.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("enclave-tls client: no verifier (a client must attest the server)")
	}
	if err := cfg.Verifier.validate(); err != nil {
		return nil, fmt.Errorf("enclave-tls client: %w", err)
	}
	c := &Client{cfg: cfg, base: baseConfig(&cfg)}
	// The server's certificate is self-signed: the attestation below replaces chain building
	// and host names. VerifyPeerCertificate still runs, and fails closed.
	c.base.InsecureSkipVerify = true
	return c, nil
}

// Client wraps a connection to a server. With RequireFresh, the server's evidence must bind a
// random nonce of this connection.
func (c *Client) Client(conn net.Conn) (*Conn, error) { return c.ClientWithNonce(conn, nil) }

// ClientWithNonce is Client with the caller's nonce (1–128 bytes): the server's evidence must bind
// it, with or without RequireFresh. It lets a relay pass on a nonce that a remote verifier chose.
func (c *Client) ClientWithNonce(conn net.Conn, nonce []byte) (*Conn, error) {
	st := &connState{}
	cfg := c.base.Clone()
	switch {
	case nonce != nil && (len(nonce) == 0 || len(nonce) > maxNonceSize):
		return nil, fmt.Errorf("enclave-tls: nonce of %d bytes, want 1 to %d", len(nonce), maxNonceSize)
	case nonce != nil:
		st.nonce = slices.Clone(nonce)
	case c.cfg.Verifier.RequireFresh:
		n, err := randomNonce()
		if err != nil {
			return nil, err
		}
		st.nonce = n
	}
	if st.nonce != nil {
		cfg.NextProtos = append(cfg.NextProtos, nonceProtocol(st.nonce))
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		p, err := verifyPeer(context.Background(), c.cfg.Verifier, cs.PeerCertificates, st.nonce)
		if err != nil {
			return fmt.Errorf("enclave-tls: server attestation: %w", err)
		}
		st.mu.Lock()
		st.peer = p
		st.challenge = p.Challenge()
		st.mu.Unlock()
		return nil
	}
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c.cfg.Identity == nil {
			return &tls.Certificate{}, nil // not attested: the server decides whether that is enough
		}
		st.mu.Lock()
		challenge := st.challenge
		st.mu.Unlock()
		if challenge != nil {
			return c.cfg.Identity.newCertificate(cri.Context(), challenge, nil, false)
		}
		return c.cfg.Identity.Certificate(cri.Context())
	}
	return &Conn{Conn: tls.Client(conn, cfg), state: st}, nil
}

// DialContext connects to addr ("tcp" or "unix" network) and completes the handshake.
func (c *Client) DialContext(ctx context.Context, network, addr string) (*Conn, error) {
	return c.DialWithNonce(ctx, network, addr, nil)
}

// DialWithNonce is DialContext with the caller's nonce (see ClientWithNonce).
func (c *Client) DialWithNonce(ctx context.Context, network, addr string, nonce []byte) (*Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn, err := c.ClientWithNonce(raw, nonce)
	if err != nil {
		raw.Close()
		return nil, err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// verifyPeer verifies the peer's certificate as crypto/tls parsed it (VerifyConnection: parsed
// once, by crypto/tls; before the handshake completes, in both directions).
func verifyPeer(ctx context.Context, v *Verifier, certs []*x509.Certificate, nonce []byte) (*Peer, error) {
	if len(certs) == 0 {
		return nil, errors.New("peer presented no certificate")
	}
	return v.VerifyCertificate(ctx, certs[0], nonce)
}

func nonceProtocol(nonce []byte) string {
	return NonceProtocolPrefix + base64.RawURLEncoding.EncodeToString(nonce)
}

// nonceFromALPN finds the client's nonce among its ALPN protocols: none, or exactly one.
func nonceFromALPN(protos []string) ([]byte, error) {
	var nonce []byte
	for _, p := range protos {
		enc, ok := strings.CutPrefix(p, NonceProtocolPrefix)
		if !ok {
			continue
		}
		if nonce != nil {
			return nil, errors.New("enclave-tls: client sent more than one nonce")
		}
		n, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil || len(n) == 0 || len(n) > maxNonceSize {
			return nil, fmt.Errorf("enclave-tls: malformed client nonce %q", p)
		}
		nonce = n
	}
	return nonce, nil
}
