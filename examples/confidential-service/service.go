package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
	"github.com/inclavare-containers/inclavare-go/shelter"
)

// Evidence sources.
const (
	evidenceAgent   = "agent"
	evidenceSimFile = "sim-key-file"
)

// Defaults of --handshake-timeout and --idle-timeout, which bound what a client can hold: the TLS
// handshake and the first request together, and the wait for each later request.
const (
	defaultHandshakeTimeout = 5 * time.Second
	defaultIdleTimeout      = 2 * time.Minute
)

type config struct {
	listen, evidence, simKey, agentSocket, clientPolicy, message string
	anchors                                                      shelter.AnchorFiles
	handshakeTimeout, idleTimeout                                time.Duration
}

type service struct {
	server                        *enclavetls.Server
	message                       string
	source                        string
	handshakeTimeout, idleTimeout time.Duration
}

// open checks the configuration, produces the first certificate (so that a missing agent or key
// fails at start) and listens.
func (c *config) open() (*service, net.Listener, error) {
	if c.listen == "" {
		return nil, nil, usageError{errors.New("--listen is required")}
	}
	network, addr, err := wire.ParseAddress(c.listen)
	if err != nil {
		return nil, nil, usageError{err}
	}
	if c.handshakeTimeout <= 0 || c.idleTimeout <= 0 {
		return nil, nil, usageError{errors.New("--handshake-timeout and --idle-timeout must be positive")}
	}
	var ec inclavared.EvidenceConfig
	switch c.evidence {
	case evidenceAgent:
		ec = inclavared.EvidenceConfig{Kind: inclavared.AttesterAgent, AgentSocket: c.agentSocket}
	case evidenceSimFile:
		if c.simKey == "" {
			return nil, nil, usageError{errors.New("--evidence sim-key-file needs --sim-key FILE")}
		}
		ec = inclavared.EvidenceConfig{Kind: inclavared.AttesterSim, SimEnclaveKey: c.simKey}
	default:
		return nil, nil, usageError{fmt.Errorf("--evidence %q: want agent or sim-key-file", c.evidence)}
	}
	ev, source, err := inclavared.EvidenceSource(ec)
	if err != nil {
		return nil, nil, err
	}
	id, err := enclavetls.NewIdentity(ev, enclavetls.IdentityOptions{CommonName: "confidential-service"})
	if err != nil {
		return nil, nil, err
	}
	cfg := enclavetls.Config{Identity: id}
	if c.clientPolicy != "" {
		p, err := policy.Load(c.clientPolicy)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--client-policy: %w", err)}
		}
		var opts attestation.Options
		if err := c.anchors.Apply(&opts); err != nil {
			return nil, nil, usageError{err}
		}
		cfg.Verifier = &enclavetls.Verifier{Options: opts, Policy: p, RequireFresh: true}
	}
	srv, err := enclavetls.NewServer(cfg)
	if err != nil {
		return nil, nil, err
	}
	if _, err := id.Certificate(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("evidence from %s: %w", source, err)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, nil, err
	}
	return &service{server: srv, message: c.message, source: source,
		handshakeTimeout: c.handshakeTimeout, idleTimeout: c.idleTimeout}, l, nil
}

// serve answers connections until ctx is done; then it closes the listener (removing a unix
// socket) and every connection, and returns nil.
func (s *service) serve(ctx context.Context, l net.Listener) error {
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			s.handle(ctx, c)
		}()
	}
}

func (s *service) handle(ctx context.Context, raw net.Conn) {
	// One deadline for the handshake and the first request: a client that connects and stalls,
	// or handshakes and sends nothing, is gone after handshakeTimeout.
	deadline := time.Now().Add(s.handshakeTimeout)
	_ = raw.SetDeadline(deadline)
	conn := s.server.Server(raw)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return // an unattested or rejected client gets nothing
	}
	codec := wire.NewCodec(conn)
	for first := true; ; first = false {
		if !first {
			_ = raw.SetReadDeadline(time.Now().Add(s.idleTimeout))
		}
		var req wire.Request
		if err := codec.Read(&req); err != nil {
			// A message that breaks the protocol (strictjson's rules, data after it) gets an
			// error and the connection is closed; a timeout or a closed connection gets nothing.
			if errors.Is(err, wire.ErrMalformed) {
				_ = raw.SetWriteDeadline(time.Now().Add(s.handshakeTimeout))
				_ = codec.Write(&wire.Response{Type: wire.TypeError, Error: err.Error()})
			}
			return
		}
		_ = raw.SetWriteDeadline(time.Now().Add(s.idleTimeout))
		if err := codec.Write(s.answer(&req)); err != nil {
			return
		}
	}
}

func (s *service) answer(req *wire.Request) *wire.Response {
	switch req.Type {
	case wire.TypeGetEnclaveInfo:
		return &wire.Response{MsgType: wire.MsgTypeEnclaveInfo, Version: wire.ProtocolVersion, Message: s.message}
	case wire.TypeEcho:
		return &wire.Response{Type: wire.TypeEcho, Data: req.Data}
	}
	return &wire.Response{Type: wire.TypeError, Error: fmt.Sprintf("unknown request type %q", req.Type)}
}
