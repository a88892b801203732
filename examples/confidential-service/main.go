// Command confidential-service is a small confidential service for the end-to-end attestation
// test: it runs inside an enclave container, gets evidence over its report data from the runelet's
// agent socket (or, for tests outside a container, from an endorsed sim enclave key file), and
// serves Enclave-TLS on a TCP port or unix socket, answering GETENCLAVEINFO and echo requests in
// inclavared's JSON protocol. With --client-policy it attests its clients (inclavared) too.
//
// It must only ever present evidence its enclave produced; it holds no platform key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "confidential-service:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "confidential-service:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// run parses args and serves until ctx is done. ready, when not nil, receives the listening
// address once the service accepts connections.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("confidential-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{}
	fs.StringVar(&cfg.listen, "listen", "", "where to serve: tcp://HOST:PORT or unix:///PATH")
	fs.StringVar(&cfg.evidence, "evidence", evidenceAgent, "evidence source: agent (runelet agent socket) or sim-key-file")
	fs.StringVar(&cfg.simKey, "sim-key", "", "sim-key-file: an endorsed sim enclave key file")
	fs.StringVar(&cfg.agentSocket, "agent-socket", "", "agent: the runelet agent socket (default /dev/.rune/agent.sock)")
	fs.StringVar(&cfg.clientPolicy, "client-policy", "", "attest clients against this policy (JSON)")
	fs.Func("sim-root", "sim platform certificate for attesting sim clients; repeatable", func(s string) error {
		cfg.anchors.Sim = append(cfg.anchors.Sim, s)
		return nil
	})
	fs.Func("intel-root", "Intel root for attesting SGX/TDX clients besides the built-in Intel SGX Root CA; repeatable", func(s string) error {
		cfg.anchors.Intel = append(cfg.anchors.Intel, s)
		return nil
	})
	fs.Func("amd-root", "AMD ARK for attesting SNP clients besides the built-in ones; repeatable", func(s string) error {
		cfg.anchors.AMD = append(cfg.anchors.AMD, s)
		return nil
	})
	fs.Func("roots", "deprecated: sim platform certificates (use --sim-root); repeatable", func(s string) error {
		cfg.anchors.Untyped = append(cfg.anchors.Untyped, s)
		return nil
	})
	fs.DurationVar(&cfg.handshakeTimeout, "handshake-timeout", defaultHandshakeTimeout, "time for the TLS handshake and the first request together")
	fs.DurationVar(&cfg.idleTimeout, "idle-timeout", defaultIdleTimeout, "time a connection may wait between requests")
	fs.StringVar(&cfg.message, "message", "hello from the confidential service", "the GETENCLAVEINFO message")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	svc, l, err := cfg.open()
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- l.Addr().String()
	}
	fmt.Fprintf(stderr, "confidential-service: serving on %s, evidence from %s\n", cfg.listen, svc.source)
	return svc.serve(ctx, l)
}
