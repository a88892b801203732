// Command verdictd is the tenant's key broker: it speaks the KBS attestation protocol of
// Confidential Containers' trustee over HTTPS and releases resources from --resources only to
// attested TEEs that satisfy --policy. With --keyprovider-listen it is also an ocicrypt key
// provider (gRPC) that wraps image layer keys with key-encryption keys from --resources. The logic
// lives in package verdictd; this file parses flags, loads files and handles signals. Exit status: 0 stopped by SIGTERM or SIGINT, 1 a runtime
// failure (the address cannot be bound), 2 a usage or configuration error.
package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
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
tokens are EAR JWTs signed with --token-key (a fresh key, logged, when absent).

With --keyprovider-listen (127.0.0.1:PORT, [::1]:PORT or unix:///PATH; nothing else, the
endpoint is plaintext) verdictd is also the ocicrypt key provider "verdictd": the tenant encrypts
image layers with
  OCICRYPT_KEYPROVIDER_CONFIG=F skopeo copy --encryption-key provider:verdictd:<repository>/<type>/<tag> SRC DST
where F is {"key-providers": {"verdictd": {"grpc": "<the same address>"}}} and the resource
<repository>/<type>/<tag> holds a 32-byte key-encryption key. Each layer key is wrapped with it
(package layerkey); an attested enclave fetches the KEK through the KBS protocol and unwraps
inside. Unwrapping here is refused unless --keyprovider-allow-unwrap (the tenant's own machine
only: whoever reaches the endpoint then gets every layer key).`
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
		cli.StringFlag{Name: "keyprovider-listen", Usage: "also serve the ocicrypt key provider (plaintext gRPC) on 127.0.0.1:PORT, [::1]:PORT or unix:///PATH"},
		cli.BoolFlag{Name: "keyprovider-allow-unwrap", Usage: "let the key provider unwrap layer keys (the tenant's own machine only; refused by default)"},
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
	var kpNetwork, kpAddress string
	if a := c.String("keyprovider-listen"); a != "" {
		var err error
		if kpNetwork, kpAddress, err = verdictd.ParseKeyProviderAddr(a); err != nil {
			return usageError("--keyprovider-listen: %v", err)
		}
	} else if c.Bool("keyprovider-allow-unwrap") {
		return usageError("--keyprovider-allow-unwrap needs --keyprovider-listen")
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
	var kp *verdictd.KeyProvider
	if kpNetwork != "" {
		if kp, err = verdictd.NewKeyProvider(verdictd.KeyProviderConfig{Store: store,
			AllowUnwrap: c.Bool("keyprovider-allow-unwrap"), Log: log}); err != nil {
			return usageError("%v", err)
		}
	}
	l, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	defer l.Close()
	var kpl net.Listener
	if kp != nil {
		if kpl, err = verdictd.ListenKeyProvider(kpNetwork, kpAddress); err != nil {
			return fmt.Errorf("--keyprovider-listen: %w", err)
		}
		defer kpl.Close()
		if c.Bool("keyprovider-allow-unwrap") {
			log.Warn("--keyprovider-allow-unwrap: the key provider unwraps layer keys for whoever reaches it", "keyprovider_addr", verdictd.KeyProviderAddr(kpl))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	attrs := []any{"addr", l.Addr().String(), "pin", kbs.PinOf(cert.Leaf), "policy", pols.ID,
		"resources", c.String("resources"), "session_ttl", c.Duration("session-ttl").String(),
		"sim_roots", len(opts.SimRoots), "intel_roots", len(opts.IntelRoots), "amd_roots", len(opts.AMDRoots)}
	if kpl != nil {
		attrs = append(attrs, "keyprovider_addr", verdictd.KeyProviderAddr(kpl),
			"keyprovider_allow_unwrap", c.Bool("keyprovider-allow-unwrap"))
	}
	log.Info("listening", attrs...)
	start := time.Now()
	// Both servers stop together: on a signal, or when either fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kpErr := make(chan error, 1)
	if kp != nil {
		go func() {
			err := kp.Serve(ctx, kpl)
			cancel()
			kpErr <- err
		}()
	} else {
		kpErr <- nil
	}
	err = b.ServeTLS(ctx, l, cert)
	cancel()
	if kerr := <-kpErr; err == nil && kerr != nil {
		err = fmt.Errorf("key provider: %w", kerr)
	}
	if err != nil {
		return err
	}
	log.Info("stopped", "uptime", time.Since(start).Round(time.Second).String())
	return nil
}
