// Package verifyflags is the one command-line surface for what a verification trusts and uses,
// shared by shelter, inclavared and verdictd: the per-TEE trust anchors, collateral files, and
// where collateral is fetched from. It only turns flags into attestation.Options; the checks are
// in the packages it calls.
package verifyflags

import (
	"fmt"
	"os"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/collateral"
	"github.com/inclavare-containers/inclavare-go/shelter"
)

// Flags are the verification-input flags.
var Flags = []cli.Flag{
	cli.StringSliceFlag{Name: "sim-root", Usage: "sim platform certificate (rune sim-platform-cert): the only anchors for sim evidence; repeatable"},
	cli.StringSliceFlag{Name: "intel-root", Usage: "Intel root for SGX/TDX chains besides the built-in Intel SGX Root CA (a self-signed CA); repeatable"},
	cli.StringSliceFlag{Name: "amd-root", Usage: "AMD ARK for SEV-SNP chains besides the built-in ones; repeatable"},
	cli.StringSliceFlag{Name: "roots", Hidden: true, Usage: "deprecated: sim platform certificates or built-in roots only (use --sim-root, --intel-root, --amd-root)"},
	cli.StringSliceFlag{Name: "collateral", Usage: "collateral file (TCB info, QE identity, CRL, certificate chain, collateral bundle JSON, VCEK), recognised by content; repeatable"},
	cli.StringFlag{Name: "collateral-from", Usage: "fetch Intel collateral for SGX/TDX quotes from Intel PCS (\"pcs\") or a PCCS (its base URL, https://HOST:PORT); PCS's subscription key, for encrypted-PPID quotes, from $INTEL_PCS_API_KEY"},
	cli.StringFlag{Name: "kds-url", Usage: "fetch VCEKs and CRLs for SEV-SNP reports from AMD KDS (\"kds\") or a mirror (its https base URL)"},
	cli.StringFlag{Name: "collateral-ca", Usage: "CA certificates (PEM) that the collateral services' TLS certificates must chain to (default: the system's)"},
	cli.StringFlag{Name: "collateral-cache", Usage: "directory caching fetched collateral until it expires"},
	cli.BoolFlag{Name: "offline", Usage: "use only --collateral files and the --collateral-cache, never the network"},
}

// Options builds attestation.Options from Flags. Its errors name the flag.
func Options(c *cli.Context) (attestation.Options, error) {
	var opts attestation.Options
	anchors := shelter.AnchorFiles{Sim: c.StringSlice("sim-root"), Intel: c.StringSlice("intel-root"),
		AMD: c.StringSlice("amd-root"), Untyped: c.StringSlice("roots")}
	if err := anchors.Apply(&opts); err != nil {
		return opts, err
	}
	var err error
	if opts.Collateral, err = shelter.LoadCollateral(c.StringSlice("collateral")); err != nil {
		return opts, fmt.Errorf("--collateral: %w", err)
	}
	cfg := collateral.Config{IntelURL: c.String("collateral-from"), KDSURL: c.String("kds-url"),
		CacheDir: c.String("collateral-cache"), Offline: c.Bool("offline"), APIKey: os.Getenv("INTEL_PCS_API_KEY")}
	if ca := c.String("collateral-ca"); ca != "" {
		if cfg.CA, err = attestation.LoadCertPool(ca); err != nil {
			return opts, fmt.Errorf("--collateral-ca: %w", err)
		}
	}
	if opts.Source, err = collateral.New(cfg); err != nil {
		return opts, fmt.Errorf("--collateral-from/--kds-url/--collateral-cache/--offline: %w", err)
	}
	return opts, nil
}
