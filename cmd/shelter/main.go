// Command shelter is the tenant's attestation tool: it verifies evidence and RA-TLS certificates
// offline (verify) and attests inclavared and the confidential container behind it
// (remoteattestation). The logic lives in package shelter; this is flags and exit codes only:
// 0 verified (and the policy held), 1 not, 2 usage error.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/internal/verifyflags"
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
var commonFlags = append([]cli.Flag{
	cli.StringFlag{Name: "at", Usage: "verify as of this time (RFC 3339) instead of now"},
	cli.StringFlag{Name: "output", Usage: "output format: text (default), json, or ear (an EAR attestation-result JWT signed with --token-key)"},
	cli.StringFlag{Name: "token-key", Usage: "with --output ear: PEM private key signing the token, ECDSA P-256 (ES256) or RSA (RS256)"},
}, verifyflags.Flags...)

// options builds attestation.Options from the common flags.
func options(c *cli.Context) (attestation.Options, error) {
	opts, err := verifyflags.Options(c)
	if err != nil {
		return opts, usageError("%v", err)
	}
	if at := c.String("at"); at != "" {
		if opts.Now, err = time.Parse(time.RFC3339, at); err != nil {
			return opts, usageError("--at: %v", err)
		}
	}
	return opts, nil
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
