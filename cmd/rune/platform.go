package main

import (
	"context"
	"os"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/urfave/cli"
)

var platformCertCommand = cli.Command{
	Name:  "sim-platform-cert",
	Usage: "print this host's simulated (sim TEE) platform certificate, the trust anchor for sim evidence",
	Description: `The sim TEE has no hardware root of trust: its evidence is signed by a per-host
platform key (created on first use at $RUNE_SIM_PLATFORM_KEY, default
/var/lib/rune/sim/platform-key.pem). Verifiers that choose to accept sim evidence
need this certificate (e.g. shelter --sim-root FILE).`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, exactArgs); err != nil {
			return err
		}
		bin, err := enclavehost.FindRunelet()
		if err != nil {
			return err
		}
		pem, err := enclavehost.SimPlatformCertificate(context.Background(), bin, os.Getenv("RUNE_SIM_PLATFORM_KEY"))
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(pem)
		return err
	},
}
