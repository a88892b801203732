package main

import (
	"context"
	"time"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
	"github.com/inclavare-containers/inclavare-go/shelter"
)

var remoteAttestationCommand = cli.Command{
	Name:  "remoteattestation",
	Usage: "attest inclavared and the confidential container behind it",
	Description: `Connects to inclavared over Enclave-TLS and requires fresh evidence (bound to a nonce of
this connection) that satisfies --inclavared-policy (default: --policy). Then asks inclavared for
the container's RA-TLS certificate bound to a second nonce of shelter's, and verifies it itself:
evidence, key binding, nonce and --policy. Exit status: 0 when everything verified and both
policies hold, 1 otherwise, 2 usage error.`,
	Flags: append([]cli.Flag{
		cli.StringFlag{Name: "addr", Usage: "inclavared address: tcp://HOST:PORT or unix:///PATH"},
		cli.StringFlag{Name: "policy", Usage: "reference-value policy (JSON) for the container (and inclavared, unless --inclavared-policy)"},
		cli.StringFlag{Name: "inclavared-policy", Usage: "reference-value policy (JSON) for inclavared"},
		cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "give up after this long"},
	}, commonFlags...),
	Action: func(c *cli.Context) error {
		if c.NArg() != 0 {
			return usageError("remoteattestation: unexpected arguments %q", c.Args())
		}
		if c.String("addr") == "" || c.String("policy") == "" {
			return usageError("remoteattestation: --addr and --policy are required")
		}
		network, addr, err := wire.ParseAddress(c.String("addr"))
		if err != nil {
			return usageError("--addr: %v", err)
		}
		format, err := outputFormat(c)
		if err != nil {
			return err
		}
		opts, err := options(c)
		if err != nil {
			return err
		}
		containerPolicy, err := loadPolicy("policy", c.String("policy"))
		if err != nil {
			return err
		}
		inclavaredPolicy := containerPolicy
		if p := c.String("inclavared-policy"); p != "" {
			if inclavaredPolicy, err = loadPolicy("inclavared-policy", p); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.Duration("timeout"))
		defer cancel()
		rr := shelter.RemoteAttestation(ctx, shelter.RemoteInput{Network: network, Address: addr, Options: opts,
			InclavaredPolicy: inclavaredPolicy, ContainerPolicy: containerPolicy})
		status := 0
		if !rr.OK {
			status = exitFail
		}
		return emit(c.App.Writer, format, rr, status)
	},
}
