package main

import (
	"context"
	"encoding/hex"
	"os"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/shelter"
)

var verifyCommand = cli.Command{
	Name:      "verify",
	Usage:     "verify a quote, SNP report, sim evidence, RA-TLS certificate or AMD VCEK/VLEK certificate",
	ArgsUsage: "FILE",
	Description: `FILE is recognised by content: an SGX quote v3, a TDX quote v4/v5, an SEV-SNP report
(optionally with its certificate table), sim evidence, or an RA-TLS certificate (PEM or
DER; interoperable or legacy format, whose evidence must bind the certificate's key). An AMD
VCEK or VLEK certificate alone gets its chain verdict (exit 0 or 1; no policy applies).
Trust anchors are per TEE: SGX/TDX chains end only at Intel's pinned root or an --intel-root,
SNP chains only at AMD's pinned ARKs or an --amd-root, and sim evidence only at a --sim-root
(the node operator holds the sim key: sim evidence is never hardware evidence). --collateral
decides the TCB status. With --policy the result is compared with reference values; without it
shelter prints what verified and says that nothing was decided.
Exit status: 0 verified and the policy held, 1 not, 2 usage error, 3 verified but no
policy given (undecided).`,
	Flags: append([]cli.Flag{
		cli.StringFlag{Name: "policy", Usage: "reference-value policy (JSON) to check"},
		cli.StringFlag{Name: "nonce", Usage: "hex nonce an RA-TLS certificate's evidence must bind"},
		cli.BoolFlag{Name: "allow-trailing-data", Usage: "accept bytes after the end of the evidence (off: strict)"},
	}, commonFlags...),
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return usageError("verify: want exactly one FILE, got %d arguments", c.NArg())
		}
		format, err := outputFormat(c)
		if err != nil {
			return err
		}
		opts, err := options(c)
		if err != nil {
			return err
		}
		opts.AllowTrailingData = c.Bool("allow-trailing-data")
		pol, err := loadPolicy("policy", c.String("policy"))
		if err != nil {
			return err
		}
		var nonce []byte
		if h := c.String("nonce"); h != "" {
			if nonce, err = hex.DecodeString(h); err != nil || len(nonce) == 0 {
				return usageError("--nonce: want hex bytes")
			}
		}
		file := c.Args().First()
		data, err := os.ReadFile(file)
		if err != nil {
			return usageError("%v", err)
		}
		r := shelter.Verify(context.Background(), shelter.VerifyInput{Subject: file, Data: data, Options: opts, Policy: pol, Nonce: nonce})
		status := 0
		switch {
		case !r.Decided:
			status = exitUndecided
		case !r.OK:
			status = exitFail
		}
		return emit(c.App.Writer, format, r, status)
	},
}
