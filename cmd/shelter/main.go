// Command shelter is the tenant's attestation tool: it verifies evidence and RA-TLS certificates
// offline (verify) and attests inclavared and the confidential container behind it
// (remoteattestation). The logic lives in package shelter; this is flags and exit codes only:
// 0 verified (and the policy held), 1 not, 2 usage error.
package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/collateral"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/shelter"
)

var version = "0.1.0-dev"

func main() {
	app := cli.NewApp()
	app.Name = "shelter"
	app.Version = version
	app.Usage = "verify TEE evidence and attest remote confidential containers"
	app.Commands = []cli.Command{verifyCommand, remoteAttestationCommand}
	app.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usageError("unknown command %q (see shelter --help)", c.Args().First())
		}
		_ = cli.ShowAppHelp(c)
		return usageError("no command given")
	}
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError("%v", err) }
	// Exit codes are decided here, not inside app.Run.
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(os.Args)
	if err == nil {
		return
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "shelter:", msg)
		}
		os.Exit(ec.ExitCode())
	}
	fmt.Fprintln(os.Stderr, "shelter:", err)
	os.Exit(2)
}

// Exit codes.
const (
	exitFail  = 1
	exitUsage = 2
	// exitUndecided: the evidence verified but no policy was given, so nothing was decided.
	exitUndecided = 3
)

func usageError(format string, args ...any) error {
	return cli.NewExitError(fmt.Sprintf(format, args...), exitUsage)
}

// commonFlags are the verification inputs both commands take.
var commonFlags = []cli.Flag{
	cli.StringSliceFlag{Name: "sim-root", Usage: "sim platform certificate (rune sim-platform-cert): the only anchors for sim evidence; repeatable"},
	cli.StringSliceFlag{Name: "intel-root", Usage: "Intel root for SGX/TDX chains besides the built-in Intel SGX Root CA (a self-signed CA); repeatable"},
	cli.StringSliceFlag{Name: "amd-root", Usage: "AMD ARK for SEV-SNP chains besides the built-in ones; repeatable"},
	cli.StringSliceFlag{Name: "roots", Hidden: true, Usage: "deprecated: sim platform certificates or built-in roots only (use --sim-root, --intel-root, --amd-root)"},
	cli.StringSliceFlag{Name: "collateral", Usage: "collateral file (TCB info, QE identity, CRL, certificate chain, VCEK), recognised by content; repeatable"},
	cli.StringFlag{Name: "collateral-from", Usage: "fetch Intel collateral for SGX/TDX quotes from Intel PCS (\"pcs\") or a PCCS (its base URL, https://HOST:PORT)"},
	cli.StringFlag{Name: "collateral-ca", Usage: "CA certificates (PEM) that the --collateral-from service's TLS certificate must chain to (default: the system's)"},
	cli.StringFlag{Name: "collateral-cache", Usage: "directory caching fetched collateral until it expires"},
	cli.BoolFlag{Name: "offline", Usage: "use only --collateral files and the --collateral-cache, never the network"},
	cli.StringFlag{Name: "at", Usage: "verify as of this time (RFC 3339) instead of now"},
	cli.StringFlag{Name: "output", Usage: "output format: text (default), json, or ear (an EAR attestation-result JWT signed with --token-key)"},
	cli.StringFlag{Name: "token-key", Usage: "with --output ear: PEM private key signing the token, ECDSA P-256 (ES256) or RSA (RS256)"},
}

// options builds attestation.Options from the common flags.
func options(c *cli.Context) (attestation.Options, error) {
	var opts attestation.Options
	var err error
	anchors := shelter.AnchorFiles{Sim: c.StringSlice("sim-root"), Intel: c.StringSlice("intel-root"),
		AMD: c.StringSlice("amd-root"), Untyped: c.StringSlice("roots")}
	if err := anchors.Apply(&opts); err != nil {
		return opts, usageError("%v", err)
	}
	if opts.Collateral, err = shelter.LoadCollateral(c.StringSlice("collateral")); err != nil {
		return opts, usageError("--collateral: %v", err)
	}
	if opts.Source, err = collateralSource(c); err != nil {
		return opts, err
	}
	if at := c.String("at"); at != "" {
		if opts.Now, err = time.Parse(time.RFC3339, at); err != nil {
			return opts, usageError("--at: %v", err)
		}
	}
	return opts, nil
}

// collateralSource builds the fetcher from --collateral-from, --collateral-ca, --collateral-cache
// and --offline; nil when none is asked for. The PCS subscription key (for encrypted-PPID quotes)
// comes from $INTEL_PCS_API_KEY, never a flag (flags show in ps).
func collateralSource(c *cli.Context) (attestation.CollateralSource, error) {
	from, dir, offline := c.String("collateral-from"), c.String("collateral-cache"), c.Bool("offline")
	if from == "" && dir == "" {
		if offline || c.String("collateral-ca") != "" {
			return nil, usageError("--offline and --collateral-ca need --collateral-from or --collateral-cache")
		}
		return nil, nil
	}
	src := &collateral.Intel{BaseURL: from, Offline: offline || from == "", APIKey: os.Getenv("INTEL_PCS_API_KEY")}
	switch {
	case from == "pcs":
		src.BaseURL = collateral.PCSURL
	case from != "":
		u, err := url.Parse(from)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, usageError("--collateral-from %q: want pcs or an https:// URL", from)
		}
	}
	if dir != "" {
		src.Cache = &collateral.Cache{Dir: dir}
	}
	if ca := c.String("collateral-ca"); ca != "" {
		pool, err := shelter.LoadCertPool(ca)
		if err != nil {
			return nil, usageError("--collateral-ca: %v", err)
		}
		src.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	return src, nil
}

func outputFormat(c *cli.Context) (string, error) {
	switch f := c.String("output"); f {
	case "", "text":
		return "text", nil
	case "json":
		return "json", nil
	case "ear":
		return "ear", loadEARSigner(c.String("token-key"))
	default:
		return "", usageError("--output %q: want text, json or ear", f)
	}
}

func loadPolicy(flag, path string) (*policy.Policy, error) {
	if path == "" {
		return nil, nil
	}
	p, err := policy.Load(path)
	if err != nil {
		return nil, usageError("--%s: %v", flag, err)
	}
	return p, nil
}

// emit prints v as JSON or text and returns the exit status status (0: none).
func emit(w io.Writer, format string, v interface{ WriteText(io.Writer) error }, status int) error {
	var err error
	if format == "ear" {
		err = writeEAR(w, v)
	} else if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(v)
	} else {
		err = v.WriteText(w)
	}
	if err != nil {
		return cli.NewExitError(err.Error(), exitFail)
	}
	if status != 0 {
		return cli.NewExitError("", status)
	}
	return nil
}
