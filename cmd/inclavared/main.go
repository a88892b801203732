// Command inclavared is the node daemon that verifiers (shelter) reach over Enclave-TLS and that
// forwards their requests to a confidential service over mutually attested Enclave-TLS. The logic
// lives in package inclavared; this file only parses flags and handles signals.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
	"github.com/inclavare-containers/inclavare-go/internal/climain"

	"github.com/inclavare-containers/inclavare-go/internal/verifyflags"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared"
)

var version = "0.1.0-dev"

func main() {
	app := cli.NewApp()
	app.Name = "inclavared"
	app.Version = version
	app.Usage = "attested relay between verifiers and a confidential service (Enclave-TLS)"
	app.Description = `inclavared listens for verifiers on Enclave-TLS, presenting evidence from its own
attester, and forwards their requests to the upstream confidential service over mutually
attested Enclave-TLS, checked against --upstream-policy. It never forwards to an upstream that
fails attestation or policy. The upstream trusts inclavared's attestation as a proxy for its
clients, so inclavared forwards only for verifiers attested against --client-policy; without it,
verifiers (such as shelter, which presents no evidence) get evidence only: attest and
GETENCLAVEINFO. --allow-unattested-clients forwards for anyone, and is logged as the risk it is.
SIGTERM or SIGINT stops it cleanly.

Print the measurement a host-side sim inclavared endorses itself with (for policies):
    inclavared --print-measurement`
	app.Flags = append([]cli.Flag{
		cli.StringFlag{Name: "listen", Usage: "where verifiers connect: tcp://HOST:PORT or unix:///PATH"},
		cli.StringFlag{Name: "upstream", Usage: "the confidential service: tcp://HOST:PORT or unix:///PATH"},
		cli.StringFlag{Name: "upstream-policy", Usage: "reference-value policy (JSON) the upstream must satisfy"},
		cli.StringFlag{Name: "client-policy", Usage: "reference-value policy (JSON) verifiers must satisfy to have requests forwarded (without it: evidence only)"},
		cli.BoolFlag{Name: "allow-unattested-clients", Usage: "forward for verifiers that are not attested; the upstream then cannot tell who it serves"},
		cli.StringFlag{Name: "attester", Value: inclavared.AttesterSim, Usage: "where inclavared's own evidence comes from: sim, tdx, snp or agent"},
		cli.StringFlag{Name: "sim-platform-key", Usage: "sim attester on the host: the platform key file (created if absent); the daemon endorses its own executable"},
		cli.StringFlag{Name: "sim-enclave-key", Usage: "sim attester: an endorsed enclave key file"},
		cli.StringFlag{Name: "agent-socket", Usage: "agent attester: the runelet agent socket (default /dev/.rune/agent.sock)"},
		cli.IntFlag{Name: "max-conns", Value: inclavared.DefaultMaxConns, Usage: "verifier connections served at once (after their handshake and first request)"},
		cli.IntFlag{Name: "max-pending", Value: inclavared.DefaultMaxPending, Usage: "connections in their handshake or first request; beyond it the oldest is closed"},
		cli.IntFlag{Name: "max-conns-per-peer", Value: inclavared.DefaultMaxConnsPerPeer, Usage: "connections of one client IP (IPv6: /64) or, on a unix socket, one client UID"},
		cli.DurationFlag{Name: "handshake-timeout", Value: inclavared.DefaultHandshakeTimeout, Usage: "time for the TLS handshake and the first request together"},
		cli.DurationFlag{Name: "idle-timeout", Value: inclavared.DefaultIdleTimeout, Usage: "time a verifier connection may wait between requests"},
		cli.BoolFlag{Name: "print-measurement", Usage: "print the SHA-256 of this executable and exit"},
		cli.BoolFlag{Name: "debug", Usage: "log every connection problem"},
	}, verifyflags.Flags...)
	app.Action = run
	climain.Run(app)
}

var usageError = climain.UsageError

func run(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError("unexpected arguments %q", c.Args())
	}
	if c.Bool("print-measurement") {
		m, err := inclavared.SelfMeasurement()
		if err != nil {
			return err
		}
		fmt.Println(m)
		return nil
	}
	for _, f := range []string{"listen", "upstream", "upstream-policy"} {
		if c.String(f) == "" {
			return usageError("--%s is required", f)
		}
	}
	// Forwarding is only for attested verifiers unless the opt-out is said.
	if c.String("client-policy") != "" && c.Bool("allow-unattested-clients") {
		return usageError("--client-policy and --allow-unattested-clients exclude each other")
	}
	for _, f := range []string{"max-conns", "max-pending", "max-conns-per-peer"} {
		if c.Int(f) <= 0 {
			return usageError("--%s must be positive", f)
		}
	}
	for _, f := range []string{"handshake-timeout", "idle-timeout"} {
		if c.Duration(f) <= 0 {
			return usageError("--%s must be positive", f)
		}
	}
	lnet, laddr, err := wire.ParseAddress(c.String("listen"))
	if err != nil {
		return usageError("--listen: %v", err)
	}
	unet, uaddr, err := wire.ParseAddress(c.String("upstream"))
	if err != nil {
		return usageError("--upstream: %v", err)
	}
	opts, err := verifyflags.Options(c)
	if err != nil {
		return usageError("%v", err)
	}
	upPolicy, err := policy.Load(c.String("upstream-policy"))
	if err != nil {
		return usageError("--upstream-policy: %v", err)
	}
	cfg := inclavared.Config{
		UpstreamNetwork:        unet,
		UpstreamAddress:        uaddr,
		UpstreamVerifier:       &enclavetls.Verifier{Options: opts, Policy: upPolicy, RequireFresh: true},
		AllowUnattestedClients: c.Bool("allow-unattested-clients"),
		MaxConns:               c.Int("max-conns"),
		MaxPending:             c.Int("max-pending"),
		MaxConnsPerPeer:        c.Int("max-conns-per-peer"),
		HandshakeTimeout:       c.Duration("handshake-timeout"),
		IdleTimeout:            c.Duration("idle-timeout"),
	}
	if p := c.String("client-policy"); p != "" {
		cp, err := policy.Load(p)
		if err != nil {
			return usageError("--client-policy: %v", err)
		}
		cfg.ClientVerifier = &enclavetls.Verifier{Options: opts, Policy: cp, RequireFresh: true}
	}
	ev, desc, err := inclavared.EvidenceSource(inclavared.EvidenceConfig{
		Kind:           c.String("attester"),
		SimPlatformKey: c.String("sim-platform-key"),
		SimEnclaveKey:  c.String("sim-enclave-key"),
		AgentSocket:    c.String("agent-socket"),
	})
	if err != nil {
		return usageError("%v", err)
	}
	if cfg.Identity, err = enclavetls.NewIdentity(ev, enclavetls.IdentityOptions{CommonName: "inclavared"}); err != nil {
		return err
	}
	level := slog.LevelWarn
	if c.Bool("debug") {
		level = slog.LevelInfo
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	d, err := inclavared.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Produce the first certificate now: a broken attester fails at start, not at the first verifier.
	if _, err := cfg.Identity.Certificate(ctx); err != nil {
		return fmt.Errorf("attester %s: %w", desc, err)
	}
	l, err := net.Listen(lnet, laddr)
	if err != nil {
		return err
	}
	clients := "attested against " + c.String("client-policy")
	switch {
	case cfg.AllowUnattestedClients:
		clients = "NOT ATTESTED, requests forwarded for anyone (--allow-unattested-clients)"
	case cfg.ClientVerifier == nil:
		clients = "not attested: evidence only, nothing forwarded (no --client-policy)"
	}
	fmt.Fprintf(os.Stderr, "inclavared: listening on %s, upstream %s, attester %s, clients %s\n", c.String("listen"), c.String("upstream"), desc, clients)
	return d.Serve(ctx, l)
}
