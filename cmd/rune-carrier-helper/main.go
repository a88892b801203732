// Command rune-carrier-helper converts one container bundle into an enclave container for
// containerd-shim-rune-v2 (a carrier: RUNE_CARRIER=wasm or native; package shim/carrierhelper).
// The shim runs it at create, beside itself: `rune-carrier-helper convert` reads a JSON request on
// stdin, writes a JSON result on stdout and logs JSON lines on stderr, which the shim logs
// again. It runs as a short-lived process so that the signing and image-lookup code, and the
// signing credentials, never live in the long-running shim.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
	"github.com/inclavare-containers/inclavare-go/shim/carrierhelper"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// maxRequest bounds the request: a few paths and, at most, a configuration document.
const maxRequest = 4 << 20

// timeout bounds one conversion: measuring a large module and a slow signing service.
const timeout = 10 * time.Minute

func main() {
	if len(os.Args) != 2 || os.Args[1] != "convert" {
		fmt.Fprintf(os.Stderr, "usage: %s convert < request.json > result.json\n(run by containerd-shim-rune-v2 at create; see shim/README.md)\n", os.Args[0])
		os.Exit(2)
	}
	res, err := convert(os.Stdin)
	if err != nil {
		res = &carrierclient.Result{Error: err.Error()}
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "%s: write result: %v\n", os.Args[0], err)
		os.Exit(1)
	}
	if res.Error != "" {
		os.Exit(1)
	}
}

func convert(in io.Reader) (*carrierclient.Result, error) {
	data, err := io.ReadAll(io.LimitReader(in, maxRequest+1))
	if err != nil {
		return nil, fmt.Errorf("read the request: %w", err)
	}
	if len(data) > maxRequest {
		return nil, fmt.Errorf("request larger than %d bytes", maxRequest)
	}
	var req carrierclient.Request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("decode the request: %w", err)
	}
	if req.Bundle == "" || req.ContainerID == "" || req.Namespace == "" || req.RunePath == "" {
		return nil, fmt.Errorf("request lacks bundle, container_id, namespace or rune_path")
	}

	logger := logrus.New()
	logger.SetOutput(os.Stderr)
	logger.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	logger.SetLevel(logrus.InfoLevel)
	if lvl, err := logrus.ParseLevel(req.LogLevel); err == nil {
		logger.SetLevel(lvl)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = log.WithLogger(ctx, logrus.NewEntry(logger))

	cfg, err := config.Load(config.Locate(req.ConfigPath, req.ConfigBody, os.Getenv))
	if err != nil {
		return nil, err
	}
	if err := carrierhelper.CheckFiles(cfg); err != nil {
		return nil, fmt.Errorf("shim configuration: %w", err)
	}
	r, err := carrierhelper.Convert(ctx, carrierhelper.Request{
		Bundle: req.Bundle, ContainerID: req.ContainerID, Namespace: req.Namespace,
		Config: cfg, RunePath: req.RunePath, ContainerdAddress: req.ContainerdAddress,
	})
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("the container of %s asks for no carrier", req.Bundle)
	}
	out := &carrierclient.Result{
		Carrier: r.Carrier, Measurement: r.Measurement, RuntimePath: r.Settings.RuntimePath, TEE: r.Settings.Type,
		Entrypoint: r.Entrypoint.Path, KeyID: r.KeyID, Ephemeral: r.Ephemeral, Cache: r.Cache, CacheNote: r.CacheNote,
	}
	if r.Image != nil {
		out.ImageReference, out.ImageDigest = r.Image.Reference, r.Image.Digest
	}
	if r.Sealed != nil {
		out.SealKeyID, out.SealedPlaintextSHA256 = r.Sealed.KeyID, r.Sealed.PlaintextSHA256
	}
	return out, nil
}
