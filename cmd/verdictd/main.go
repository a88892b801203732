// Command verdictd is the tenant's key broker: it speaks the KBS attestation protocol of
// Confidential Containers' trustee over HTTPS and releases resources from --resources only to
// attested TEEs that satisfy --policy. The logic lives in package verdictd; this file parses flags,
// loads files and handles signals. Exit status: 0 stopped by SIGTERM or SIGINT, 1 a runtime
// failure (the address cannot be bound), 2 a usage or configuration error.
package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/climain"

	"github.com/inclavare-containers/inclavare-go/internal/verifyflags"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/ear"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/verdictd"
)

var version = "0.1.0-dev"

func main() {
	app := cli.NewApp()
	app.Name = "verdictd"
	app.Version = version
	app.Usage = "key broker: releases secrets only to attested TEEs (KBS attestation protocol over HTTPS)"
	app.Description = `verdictd serves POST /kbs/v0/auth, POST /kbs/v0/attest and
GET /kbs/v0/resource/<repository>/<type>/<tag> over TLS 1.3. A TEE attests with evidence whose
report data binds verdictd's single-use nonce and the TEE's ephemeral key; a resource
(--resources DIR/<repository>/<type>/<tag>) is released, encrypted to that key, only when the
resource's policy in --policy (or its "default") holds. Trust anchors are per TEE: --sim-root,
--intel-root, --amd-root. Every release and refusal is logged (JSON on stderr). Attestation
tokens are EAR JWTs signed with --token-key (a fresh key, logged, when absent).`
	app.Flags = append([]cli.Flag{
		cli.StringFlag{Name: "listen", Usage: "HOST:PORT to serve HTTPS on"},
		cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate (chain) of the broker; clients pin its key or trust its CA"},
		cli.StringFlag{Name: "tls-key", Usage: "PEM private key of --tls-cert"},
		cli.StringFlag{Name: "policy", Usage: `policies: {"default": <policy>, "resources": {"<repository>/<type>/<tag>": <policy>}}`},
		cli.StringFlag{Name: "resources", Usage: "directory of resources, DIR/<repository>/<type>/<tag>"},
		cli.StringFlag{Name: "token-key", Usage: "PEM private key signing attestation tokens: ECDSA P-256 (ES256) or RSA ≥ 2048 bits (RS256); default: a fresh P-256 key, logged"},
		cli.DurationFlag{Name: "session-ttl", Value: verdictd.DefaultSessionTTL, Usage: "lifetime of a session: its challenge, then its attestation"},
		cli.IntFlag{Name: "max-sessions", Value: verdictd.DefaultMaxSessions, Usage: "sessions held at once"},
		cli.Int64Flag{Name: "max-resource-size", Value: verdictd.DefaultMaxResourceSize, Usage: "largest resource file served, in bytes"},
	}, verifyflags.Flags...)
	app.Action = run
	climain.Run(app)
}

var usageError = climain.UsageError

func run(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError("unexpected arguments %q", c.Args())
	}
	for _, f := range []string{"listen", "tls-cert", "tls-key", "policy", "resources"} {
		if c.String(f) == "" {
			return usageError("--%s is required", f)
		}
	}
	if c.Duration("session-ttl") <= 0 || c.Int("max-sessions") <= 0 || c.Int64("max-resource-size") <= 0 {
		return usageError("--session-ttl, --max-sessions and --max-resource-size must be positive")
	}
	cert, err := tls.LoadX509KeyPair(c.String("tls-cert"), c.String("tls-key"))
	if err != nil {
		return usageError("--tls-cert/--tls-key: %v", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return usageError("--tls-cert: %v", err)
		}
	}
	opts, err := verifyflags.Options(c)
	if err != nil {
		return usageError("%v", err)
	}
	pols, err := verdictd.LoadPolicies(c.String("policy"))
	if err != nil {
		return usageError("--policy: %v", err)
	}
	store, err := verdictd.OpenStore(c.String("resources"), c.Int64("max-resource-size"))
	if err != nil {
		return usageError("--resources: %v", err)
	}
	defer store.Close()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var tokenKey crypto.Signer
	if p := c.String("token-key"); p != "" {
		if tokenKey, err = ear.LoadSigningKey(p); err != nil {
			return usageError("--token-key: %v", err)
		}
	} else {
		if tokenKey, err = ear.GenerateSigningKey(); err != nil {
			return err
		}
		pub, err := ear.PublicKeyPEM(tokenKey)
		if err != nil {
			return err
		}
		log.Warn("no --token-key: tokens are signed with a fresh P-256 key that lives as long as this process", "token_public_key", string(pub))
	}
	b, err := verdictd.New(verdictd.Config{Options: opts, Policies: pols, Store: store, TokenKey: tokenKey,
		SessionTTL: c.Duration("session-ttl"), MaxSessions: c.Int("max-sessions"), Log: log, Build: "verdictd " + version})
	if err != nil {
		return usageError("%v", err)
	}
	l, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("listening", "addr", l.Addr().String(), "pin", kbs.PinOf(cert.Leaf), "policy", pols.ID,
		"resources", c.String("resources"), "session_ttl", c.Duration("session-ttl").String(),
		"sim_roots", len(opts.SimRoots), "intel_roots", len(opts.IntelRoots), "amd_roots", len(opts.AMDRoots))
	start := time.Now()
	if err := b.ServeTLS(ctx, l, cert); err != nil {
		return err
	}
	log.Info("stopped", "uptime", time.Since(start).Round(time.Second).String())
	return nil
}
