// Command rune-device-plugin is the Kubernetes device plugin that advertises a node's TEE
// capacity (SGX EPC, TDX, SEV-SNP, and rune's simulated TEE) to the kubelet and gives enclave
// containers their devices; see package deviceplugin and deploy/README.md. It stops serving
// and removes its sockets on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/deviceplugin"
)

func main() {
	var cfg deviceplugin.Config
	cfg.RegisterFlags(flag.CommandLine)
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "rune-device-plugin: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	log := logrus.New()
	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rune-device-plugin: -log-level: %v\n", err)
		os.Exit(2)
	}
	log.SetLevel(lvl)
	cfg.Log = log

	p, err := deviceplugin.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rune-device-plugin: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Errorf("rune-device-plugin: %v", err)
		os.Exit(1)
	}
	log.Info("rune-device-plugin: stopped")
}
