package inclavared

import (
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
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavetls"
)

// Defaults for Config's zero values.
const (
	DefaultMaxConns         = 64
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultUpstreamTimeout  = 30 * time.Second
	DefaultShutdownGrace    = 5 * time.Second
)

// Config is what a Daemon needs.
type Config struct {
	// Identity is inclavared's own attested identity.
	Identity *enclavetls.Identity
	// ClientVerifier, when set, requires verifiers (clients) to be attested too.
	ClientVerifier *enclavetls.Verifier
	// UpstreamNetwork and UpstreamAddress locate the confidential service ("tcp" or "unix").
	UpstreamNetwork, UpstreamAddress string
	// UpstreamVerifier checks the confidential service (its policy is required). inclavared
	// presents Identity to it: the upstream connection is mutually attested.
	UpstreamVerifier *enclavetls.Verifier
	// MaxConns bounds concurrent verifier connections; more wait in the listen backlog.
	MaxConns int
	// HandshakeTimeout, IdleTimeout (between requests), UpstreamTimeout (dial, handshake and
	// one exchange) and ShutdownGrace (for in-flight requests) default to the Default* values.
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

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// New checks cfg and returns a daemon.
func New(cfg Config) (*Daemon, error) {
	if cfg.UpstreamVerifier == nil {
		return nil, errors.New("inclavared: no upstream verifier (an upstream policy is required)")
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
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Daemon{cfg: cfg, server: srv, upstream: up, log: log, conns: map[net.Conn]struct{}{}}, nil
}

// Serve accepts verifiers on l until ctx is done, then stops accepting, lets requests in flight
// finish for ShutdownGrace, closes every connection and returns nil. It returns an error only if
// accepting fails otherwise. l is closed on return (for a unix listener that removes the socket).
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	slots := make(chan struct{}, d.cfg.MaxConns)
	var wg sync.WaitGroup
	var acceptErr error
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		c, err := l.Accept()
		if err != nil {
			<-slots
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("inclavared: accept: %w", err)
			}
			break
		}
		d.track(c, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer d.track(c, false)
			defer c.Close()
			d.handle(ctx, c)
		}()
	}
	// Shutdown: wake idle readers now; give busy handlers the grace period, then cut them off.
	d.forEach(func(c net.Conn) { _ = c.SetReadDeadline(time.Now()) })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownGrace):
		d.forEach(func(c net.Conn) { c.Close() })
		<-done
	}
	return acceptErr
}

func (d *Daemon) track(c net.Conn, add bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if add {
		d.conns[c] = struct{}{}
	} else {
		delete(d.conns, c)
	}
}

func (d *Daemon) forEach(f func(net.Conn)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		f(c)
	}
}

// session is one verifier connection and the upstream connection it uses.
type session struct {
	d   *Daemon
	up  *enclavetls.Conn
	upc *Codec
	// info is the upstream's GETENCLAVEINFO answer on this connection, when connect just made it.
	info *Response
}

func (d *Daemon) handle(ctx context.Context, raw net.Conn) {
	conn := d.server.Server(raw)
	hctx, cancel := context.WithTimeout(ctx, d.cfg.HandshakeTimeout)
	err := conn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		d.log.Info("verifier handshake failed", "remote", raw.RemoteAddr(), "err", err)
		return
	}
	s := &session{d: d}
	defer s.closeUpstream()
	codec := NewCodec(conn)
	for ctx.Err() == nil {
		_ = raw.SetReadDeadline(time.Now().Add(d.cfg.IdleTimeout))
		var req Request
		if err := codec.Read(&req); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				d.log.Info("verifier request", "remote", raw.RemoteAddr(), "err", err)
				_ = codec.Write(&Response{Type: TypeError, Error: err.Error()})
			}
			return
		}
		_ = raw.SetReadDeadline(time.Time{})
		resp := s.serve(ctx, &req)
		_ = raw.SetWriteDeadline(time.Now().Add(d.cfg.UpstreamTimeout))
		if err := codec.Write(resp); err != nil {
			d.log.Info("verifier answer", "remote", raw.RemoteAddr(), "err", err)
			return
		}
	}
}

func errorResponse(format string, args ...any) *Response {
	return &Response{Type: TypeError, Error: fmt.Sprintf(format, args...)}
}

func (s *session) serve(ctx context.Context, req *Request) *Response {
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.UpstreamTimeout)
	defer cancel()
	switch req.Type {
	case TypeGetEnclaveInfo:
		if err := s.connect(ctx, nil, false); err != nil {
			return errorResponse("%v", err)
		}
		up := s.info
		if up == nil {
			up = &Response{}
			if err := s.exchange(ctx, &Request{Type: TypeGetEnclaveInfo}, up); err != nil {
				return errorResponse("upstream GETENCLAVEINFO: %v", err)
			}
			if up.Error != "" {
				return errorResponse("upstream GETENCLAVEINFO: %s", up.Error)
			}
		}
		s.info = nil
		resp := s.describe(&Response{MsgType: MsgTypeEnclaveInfo, Version: ProtocolVersion, Message: up.Message})
		resp.ID = requestID()
		return resp
	case TypeAttest:
		nonce, err := hex.DecodeString(req.Nonce)
		if err != nil || len(nonce) == 0 || len(nonce) > MaxNonceSize {
			return errorResponse("attest: nonce must be 1 to %d bytes of hex", MaxNonceSize)
		}
		if err := s.connect(ctx, nonce, true); err != nil {
			return errorResponse("%v", err)
		}
		s.info = nil
		return s.describe(&Response{Type: TypeAttestation, Nonce: req.Nonce})
	case TypeForward:
		var probe map[string]json.RawMessage
		if len(req.Request) == 0 || json.Unmarshal(req.Request, &probe) != nil {
			return errorResponse("forward: request must be a JSON object")
		}
		if err := s.connect(ctx, nil, false); err != nil {
			return errorResponse("%v", err)
		}
		s.info = nil
		var answer json.RawMessage
		if err := s.exchange(ctx, req.Request, &answer); err != nil {
			return errorResponse("forward: %v", err)
		}
		return s.describe(&Response{Type: TypeForwarded, Response: answer})
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
	s.up, s.upc = conn, NewCodec(conn)
	var info Response
	if err := s.exchange(ctx, &Request{Type: TypeGetEnclaveInfo}, &info); err != nil {
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
	if err := Call(ctx, s.up, s.upc, req, resp); err != nil {
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
func (s *session) describe(resp *Response) *Response {
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
