// Command rune-signer is a signing service for enclave manifests: containerd-shim-rune-v2
// posts a manifest payload over HTTPS with a client certificate and gets back a signature
// made with a key that never leaves this service. TLS 1.3 only; a client certificate issued
// by --client-ca is required; every signature is logged (log/slog, JSON on stderr) with the
// client's identity and what was signed. The protocol and the checks live in package
// manifest/signservice (Handler); this file only parses flags and runs the server.
//
// It must never serve plain HTTP, sign for an unauthenticated client, or sign anything but
// a well-formed manifest payload naming its own key.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/signservice"
)

const usageText = `Usage: rune-signer --key KEY.pem --tls-cert CERT.pem --tls-key KEY.pem --client-ca CA.pem [--listen ADDR]
       rune-signer --key KEY.pem --print-public-key

Signs enclave manifests for containerd-shim-rune-v2 (config.toml [signing.service]).
GET <path> describes the signing key; POST <path> signs (see docs/enclave-manifest.md).
--print-public-key writes the key's id and PEM public key, to append to rune's trust file.

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil))
}

type options struct {
	listen, key, tlsCert, tlsKey, clientCA, path, logLevel string
	printPublicKey                                         bool
}

// run is the whole program; ready, when set, is told the listening address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(net.Addr)) int {
	fs := flag.NewFlagSet("rune-signer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.listen, "listen", ":8443", "TCP address to listen on")
	fs.StringVar(&o.key, "key", "", "the signing key: PEM ECDSA P-256 or Ed25519 (PKCS#8), or RSA (required)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "the service's TLS certificate (chain), PEM")
	fs.StringVar(&o.tlsKey, "tls-key", "", "the TLS certificate's private key, PEM")
	fs.StringVar(&o.clientCA, "client-ca", "", "PEM CA certificates that issue client certificates; only their clients get signatures")
	fs.StringVar(&o.path, "path", "/v1/sign", "URL path of the signing endpoint")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.printPublicKey, "print-public-key", false, "print the signing key's id and PEM public key, then exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "rune-signer: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	if o.key == "" {
		return usage("--key is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usage("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	key, err := enclavemanifest.LoadKeySigner(o.key)
	if err != nil {
		fmt.Fprintln(stderr, "rune-signer:", err)
		return 1
	}
	if o.printPublicKey {
		if err := printPublicKey(ctx, stdout, key); err != nil {
			fmt.Fprintln(stderr, "rune-signer:", err)
			return 1
		}
		return 0
	}
	var missing []string
	for _, f := range []struct{ name, val string }{{"--tls-cert", o.tlsCert}, {"--tls-key", o.tlsKey}, {"--client-ca", o.clientCA}} {
		if f.val == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return usage("%s required: the service is only reachable over TLS with client certificates", strings.Join(missing, ", "))
	}
	if !strings.HasPrefix(o.path, "/") {
		return usage("--path %q must start with /", o.path)
	}
	if err := serve(ctx, o, key, log, ready); err != nil {
		log.Error("rune-signer stopped", "err", err)
		return 1
	}
	return 0
}

func printPublicKey(ctx context.Context, w io.Writer, key *enclavemanifest.KeySigner) error {
	id, err := key.Identity(ctx)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(id.PublicKey)
	if err != nil {
		return err
	}
	// Text before a PEM block is ignored by PEM readers, so this output can be appended to a
	// trust file as it is.
	fmt.Fprintf(w, "key id %s (%s)\n", id.KeyID, id.Algorithm)
	return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func serve(ctx context.Context, o options, key *enclavemanifest.KeySigner, log *slog.Logger, ready func(net.Addr)) error {
	svc, err := signservice.NewHandler(key, log)
	if err != nil {
		return err
	}
	tlsConf, err := signservice.ServerTLSConfig(o.tlsCert, o.tlsKey, o.clientCA)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(o.path, svc)
	srv := &http.Server{
		Handler:   mux,
		TLSConfig: tlsConf,
		// Bounded everything: a slow or greedy client cannot hold the service.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	id, _ := key.Identity(ctx)
	log.Info("serving", "addr", ln.Addr().String(), "path", o.path, "key_id", id.KeyID, "algorithm", id.Algorithm)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
