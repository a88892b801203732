package inclavared

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// Defaults for Config's zero values.
const (
	DefaultMaxConns         = 64
	DefaultMaxPending       = 64
	DefaultMaxConnsPerPeer  = 8
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultUpstreamTimeout  = 30 * time.Second
	DefaultShutdownGrace    = 5 * time.Second
)

// UnattestedClientsRisk is what the daemon logs when it serves verifiers that are not attested.
const UnattestedClientsRisk = "client attestation is off: anyone who can connect has requests forwarded to the " +
	"confidential service, which trusts inclavared's attestation and cannot tell them from attested verifiers"

// ErrForwardNeedsAttestedClient is the answer to a forward request from a verifier that was not
// attested, when inclavared was not told to forward for such verifiers.
const ErrForwardNeedsAttestedClient = "forward: refused: this inclavared forwards only for attested verifiers " +
	"(--client-policy); unattested verifiers get evidence only (attest, GETENCLAVEINFO)"

// Config is what a Daemon needs.
type Config struct {
	// Identity is inclavared's own attested identity.
	Identity *enclavetls.Identity
	// ClientVerifier requires verifiers (clients) to be attested; then every request is served.
	// Without it, and without AllowUnattestedClients, verifiers are not attested and get
	// evidence only (attest, GETENCLAVEINFO): nothing is forwarded to the upstream, which
	// trusts inclavared's attestation as a proxy for inclavared's clients.
	ClientVerifier *enclavetls.Verifier
	// AllowUnattestedClients forwards for verifiers that are not attested (logged at start and
	// per connection). It excludes ClientVerifier.
	AllowUnattestedClients bool
	// UpstreamNetwork and UpstreamAddress locate the confidential service ("tcp" or "unix").
	UpstreamNetwork, UpstreamAddress string
	// UpstreamVerifier checks the confidential service (its policy is required). inclavared
	// presents Identity to it: the upstream connection is mutually attested.
	UpstreamVerifier *enclavetls.Verifier
	// MaxConns bounds verifier connections that completed their handshake and first request
	// (each may hold an upstream connection). MaxPending bounds connections before that point;
	// beyond it the oldest is closed. MaxConnsPerPeer bounds the connections of one client IP
	// (IPv6: /64) or, on a unix socket, one client UID. See limits.go.
	MaxConns, MaxPending, MaxConnsPerPeer int
	// HandshakeTimeout bounds the TLS handshake and the first request together. IdleTimeout
	// bounds the wait for each later request, UpstreamTimeout the upstream dial, handshake and one
	// exchange, ShutdownGrace the requests in flight at shutdown. Zero values take the Default*
	// values.
	HandshakeTimeout, IdleTimeout, UpstreamTimeout, ShutdownGrace time.Duration
	// Log receives one line per connection problem; nil discards.
	Log *slog.Logger
}

// Daemon serves verifiers.
type Daemon struct {
	cfg      Config
	server   *enclavetls.Server
	upstream *enclavetls.Client
	log      *slog.Logger
	conns    *connTable
}

// New checks cfg and returns a daemon.
func New(cfg Config) (*Daemon, error) {
	if cfg.UpstreamVerifier == nil {
		return nil, errors.New("inclavared: no upstream verifier (an upstream policy is required)")
	}
	if cfg.ClientVerifier != nil && cfg.AllowUnattestedClients {
		return nil, errors.New("inclavared: a client verifier and allowing unattested clients exclude each other")
	}
	if cfg.UpstreamNetwork != "tcp" && cfg.UpstreamNetwork != "unix" {
		return nil, fmt.Errorf("inclavared: upstream network %q, want tcp or unix", cfg.UpstreamNetwork)
	}
	srv, err := enclavetls.NewServer(enclavetls.Config{Identity: cfg.Identity, Verifier: cfg.ClientVerifier})
	if err != nil {
		return nil, fmt.Errorf("inclavared: %w", err)
	}
	up, err := enclavetls.NewClient(enclavetls.Config{Identity: cfg.Identity, Verifier: cfg.UpstreamVerifier})
	if err != nil {
		return nil, fmt.Errorf("inclavared: upstream: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.UpstreamTimeout, DefaultUpstreamTimeout)
	def(&cfg.ShutdownGrace, DefaultShutdownGrace)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&cfg.MaxConns, DefaultMaxConns)
	defInt(&cfg.MaxPending, DefaultMaxPending)
	defInt(&cfg.MaxConnsPerPeer, DefaultMaxConnsPerPeer)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Daemon{cfg: cfg, server: srv, upstream: up, log: log,
		conns: newConnTable(cfg.MaxPending, cfg.MaxConns, cfg.MaxConnsPerPeer)}, nil
}

// Connections returns the verifier connections the daemon holds: pending (handshake or first
// request in progress) and serving.
func (d *Daemon) Connections() (pending, serving int) { return d.conns.counts() }

// Serve accepts verifiers on l until ctx is done, then stops accepting, lets requests in flight
// finish for ShutdownGrace, closes every connection and returns nil. It returns an error only if
// accepting fails otherwise. l is closed on return (for a unix listener that removes the socket).
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	if d.cfg.AllowUnattestedClients {
		d.log.Warn(UnattestedClientsRisk)
	}
	var wg sync.WaitGroup
	var acceptErr error
	backoff := time.Duration(0)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
				// Out of descriptors: connections in progress will free some; keep serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				d.log.Warn("accept", "err", err, "retry in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				continue
			}
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("inclavared: accept: %w", err)
			}
			break
		}
		backoff = 0
		// Accepting never waits for a slot: a connection that cannot be served is closed at once
		// or later by its deadline, so the listen backlog never fills with idle clients.
		deadline := time.Now().Add(d.cfg.HandshakeTimeout)
		tc, err := d.conns.admit(c, deadline)
		if err != nil {
			d.log.Info("verifier refused", "remote", c.RemoteAddr(), "err", err)
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.handle(ctx, tc)
			c.Close()
			d.conns.release(tc)
			pending, serving := d.conns.counts()
			d.log.Info("verifier connection closed", "remote", c.RemoteAddr(), "peer", tc.peer, "pending", pending, "serving", serving)
		}()
	}
	// Shutdown: wake idle readers and handshakes now; give busy handlers the grace period, then
	// cut them off.
	d.conns.forEach(func(c net.Conn) { _ = c.SetReadDeadline(time.Now()) })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownGrace):
		d.conns.forEach(func(c net.Conn) { c.Close() })
		<-done
	}
	return acceptErr
}

// session is one verifier connection and the upstream connection it uses.
type session struct {
	d   *Daemon
	up  *enclavetls.Conn
	upc *wire.Codec
	// info is the upstream's GETENCLAVEINFO answer on this connection, when connect just made it.
	info *wire.Response
}

func (d *Daemon) handle(ctx context.Context, tc *tracked) {
	raw := tc.raw
	remote := raw.RemoteAddr()
	_ = raw.SetDeadline(tc.deadline)
	conn := d.server.Server(raw)
	hctx, cancel := context.WithDeadline(ctx, tc.deadline)
	err := conn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		d.log.Info("verifier handshake failed", "remote", remote, "peer", tc.peer, "err", err)
		return
	}
	if d.cfg.AllowUnattestedClients {
		d.log.Info("serving an unattested verifier (--allow-unattested-clients)", "remote", remote, "peer", tc.peer)
	}
	s := &session{d: d}
	defer s.closeUpstream()
	codec := wire.NewCodec(conn)
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			d.conns.idle(tc)
			_ = raw.SetReadDeadline(time.Now().Add(d.cfg.IdleTimeout))
		}
		var req wire.Request
		if err := codec.Read(&req); err != nil {
			switch {
			case d.conns.displaced(tc), ctx.Err() != nil, errors.Is(err, io.EOF):
			case errors.Is(err, wire.ErrMalformed):
				d.log.Info("verifier request", "remote", remote, "err", err)
				_ = raw.SetWriteDeadline(time.Now().Add(d.cfg.HandshakeTimeout))
				_ = codec.Write(&wire.Response{Type: wire.TypeError, Error: err.Error()})
			default:
				d.log.Info("verifier connection", "remote", remote, "err", err)
			}
			return
		}
		if first {
			if err := d.conns.serve(tc, ctx.Done()); err != nil {
				d.log.Info("verifier not served", "remote", remote, "err", err)
				if errors.Is(err, errBusy) {
					_ = raw.SetWriteDeadline(time.Now().Add(d.cfg.HandshakeTimeout))
					_ = codec.Write(errorResponse("inclavared is busy: %v", err))
				}
				return
			}
		} else if !d.conns.busy(tc) {
			return // displaced while its request arrived: the connection is closed
		}
		_ = raw.SetReadDeadline(time.Time{})
		resp := s.serve(ctx, &req)
		_ = raw.SetWriteDeadline(time.Now().Add(d.cfg.UpstreamTimeout))
		if err := codec.Write(resp); err != nil {
			d.log.Info("verifier answer", "remote", remote, "err", err)
			return
		}
	}
}

func errorResponse(format string, args ...any) *wire.Response {
	return &wire.Response{Type: wire.TypeError, Error: fmt.Sprintf(format, args...)}
}

func (s *session) serve(ctx context.Context, req *wire.Request) *wire.Response {
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.UpstreamTimeout)
	defer cancel()
	switch req.Type {
	case wire.TypeGetEnclaveInfo:
		if err := s.connect(ctx, nil, false); err != nil {
			return errorResponse("%v", err)
		}
		up := s.info
		if up == nil {
			up = &wire.Response{}
			if err := s.exchange(ctx, &wire.Request{Type: wire.TypeGetEnclaveInfo}, up); err != nil {
				return errorResponse("upstream GETENCLAVEINFO: %v", err)
			}
			if up.Error != "" {
				return errorResponse("upstream GETENCLAVEINFO: %s", up.Error)
			}
		}
		s.info = nil
		resp := s.describe(&wire.Response{MsgType: wire.MsgTypeEnclaveInfo, Version: wire.ProtocolVersion, Message: up.Message})
		resp.ID = requestID()
		return resp
	case wire.TypeAttest:
		nonce, err := hex.DecodeString(req.Nonce)
		if err != nil || len(nonce) == 0 || len(nonce) > wire.MaxNonceSize {
			return errorResponse("attest: nonce must be 1 to %d bytes of hex", wire.MaxNonceSize)
		}
		if err := s.connect(ctx, nonce, true); err != nil {
			return errorResponse("%v", err)
		}
		s.info = nil
		return s.describe(&wire.Response{Type: wire.TypeAttestation, Nonce: req.Nonce})
	case wire.TypeForward:
		if s.d.cfg.ClientVerifier == nil && !s.d.cfg.AllowUnattestedClients {
			return errorResponse("%s", ErrForwardNeedsAttestedClient)
		}
		// The message was read strictly as a whole; the service gets these bytes verbatim, so they
		// are checked again on their own: one object, one reading.
		fwd := bytes.TrimSpace(req.Request)
		if len(fwd) == 0 || fwd[0] != '{' {
			return errorResponse("forward: request must be a JSON object")
		}
		if err := strictjson.CheckStructure(fwd); err != nil {
			return errorResponse("forward: request: %v", err)
		}
		if err := s.connect(ctx, nil, false); err != nil {
			return errorResponse("%v", err)
		}
		s.info = nil
		var answer json.RawMessage
		if err := s.exchange(ctx, json.RawMessage(fwd), &answer); err != nil {
			return errorResponse("forward: %v", err)
		}
		return s.describe(&wire.Response{Type: wire.TypeForwarded, Response: answer})
	}
	return errorResponse("unknown request type %q", req.Type)
}

// connect makes sure the session has an attested upstream connection; with renew, a new one whose
// evidence binds nonce. A connection that failed attestation is never used: there is no
// connection to use. A new connection is confirmed with a GETENCLAVEINFO exchange, because in
// TLS 1.3 the client's handshake completes before the server has checked the client's
// certificate: only an answer shows that the upstream accepted inclavared.
func (s *session) connect(ctx context.Context, nonce []byte, renew bool) error {
	if s.up != nil && !renew {
		return nil
	}
	s.closeUpstream()
	conn, err := s.d.upstream.DialWithNonce(ctx, s.d.cfg.UpstreamNetwork, s.d.cfg.UpstreamAddress, nonce)
	if err != nil {
		s.d.log.Warn("upstream attestation failed", "upstream", s.d.cfg.UpstreamAddress, "err", err)
		return fmt.Errorf("upstream %s: %w", s.d.cfg.UpstreamAddress, err)
	}
	s.up, s.upc = conn, wire.NewCodec(conn)
	var info wire.Response
	if err := s.exchange(ctx, &wire.Request{Type: wire.TypeGetEnclaveInfo}, &info); err != nil {
		s.d.log.Warn("upstream refused inclavared", "upstream", s.d.cfg.UpstreamAddress, "err", err)
		return fmt.Errorf("upstream %s did not accept inclavared: %w", s.d.cfg.UpstreamAddress, err)
	}
	if info.Error != "" {
		s.closeUpstream()
		return fmt.Errorf("upstream %s: GETENCLAVEINFO: %s", s.d.cfg.UpstreamAddress, info.Error)
	}
	s.info = &info
	return nil
}

func (s *session) exchange(ctx context.Context, req, resp any) error {
	if err := wire.Call(ctx, s.up, s.upc, req, resp); err != nil {
		s.closeUpstream() // a broken or desynchronised stream is not reused
		return err
	}
	return nil
}

func (s *session) closeUpstream() {
	if s.up != nil {
		s.up.Close()
		s.up, s.upc, s.info = nil, nil, nil
	}
}

// describe adds what inclavared verified about the upstream to resp.
func (s *session) describe(resp *wire.Response) *wire.Response {
	p := s.up.Peer()
	r := p.Result
	resp.TEE = string(r.TEE)
	resp.Measurements = r.Measurements
	resp.UpstreamCertificate = p.Certificate.Raw
	resp.MRSIGNER = r.Signer
	for _, name := range []string{"mrenclave", "mrtd", "measurement"} {
		if m, ok := r.Measurements[name]; ok {
			resp.MRENCLAVE = m
			break
		}
	}
	return resp
}

func requestID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return fmt.Sprint(os.Getpid())
	}
	return hex.EncodeToString(b)
}
