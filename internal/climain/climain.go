// Package climain is the exit-code convention the daemons' command lines share (inclavared,
// verdictd): 0 success, 1 a runtime error, 2 a usage error, errors printed once as "NAME: …".
package climain

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli"
)

// ExitUsage is the status of a usage error.
const ExitUsage = 2

// UsageError is an error that makes Run exit with ExitUsage.
func UsageError(format string, args ...any) error {
	return cli.NewExitError(fmt.Sprintf(format, args...), ExitUsage)
}

// Run runs app with os.Args and exits with the status its error carries.
func Run(app *cli.App) {
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return UsageError("%v", err) }
	app.ExitErrHandler = func(*cli.Context, error) {} // exit codes are decided here
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
