// Command rune is an OCI runtime, command-line compatible with runc, that can also run a container's
// workload inside an enclave runtime.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	_ "github.com/opencontainers/cgroups/devices" // device cgroup management for the v1 and v2 managers
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

const usage = `Open Container Initiative runtime for enclave containers

rune is a command line client for running applications packaged according to
the Open Container Initiative (OCI) format, compatible with runc. A container
whose process environment or annotations name an enclave type runs its
workload inside an enclave runtime instead of executing it directly.

To start a new instance of a container:

    # rune run [ -b bundle ] <container-id>`

func main() {
	// Usage errors from the cli package go to the log as well, as runc does, so that callers that
	// read only the log (containerd, Docker) see them.
	cli.ErrWriter = &logWriter{next: cli.ErrWriter}
	if err := newApp().Run(os.Args); err != nil {
		fatal(err)
	}
}

// newApp is rune's command line: runc's global flags and commands, and rune's own.
func newApp() *cli.App {
	app := cli.NewApp()
	app.Name = "rune"
	app.Version = version
	app.Usage = usage
	cli.VersionPrinter = func(c *cli.Context) {
		w := c.App.Writer
		fmt.Fprintln(w, "rune version", c.App.Version)
		fmt.Fprintln(w, "spec:", specs.Version)
		fmt.Fprintln(w, "go:", runtime.Version())
		if major, minor, micro := seccomp.Version(); major+minor+micro > 0 {
			fmt.Fprintf(w, "libseccomp: %d.%d.%d\n", major, minor, micro)
		}
	}
	app.Flags = []cli.Flag{
		cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
		cli.StringFlag{Name: "log", Usage: "set the log file to write rune logs to (default is '/dev/stderr')"},
		cli.StringFlag{Name: "log-format", Value: "text", Usage: "set the log format ('text' (default), or 'json')"},
		cli.StringFlag{Name: "root", Value: "/run/rune", Usage: "root directory for storage of container state (this should be located in tmpfs)"},
		cli.BoolFlag{Name: "systemd-cgroup", Usage: "enable systemd cgroup support, expects cgroupsPath to be of form \"slice:prefix:name\" for e.g. \"system.slice:rune:434234\""},
		cli.StringFlag{Name: "rootless", Value: "auto", Usage: "ignore cgroup permission errors ('true', 'false', or 'auto')"},
	}
	app.Flags = append(app.Flags, manifestFlags...)
	app.Commands = []cli.Command{
		attestCommand,
		checkpointCommand,
		createCommand,
		deleteCommand,
		eventsCommand,
		execCommand,
		featuresCommand,
		killCommand,
		listCommand,
		pauseCommand,
		psCommand,
		restoreCommand,
		resumeCommand,
		runCommand,
		specCommand,
		startCommand,
		stateCommand,
		updateCommand,
		platformCertCommand,
	}
	app.Before = func(c *cli.Context) error {
		if c.IsSet("root") {
			root, err := filepath.Abs(c.GlobalString("root"))
			if err != nil {
				return err
			}
			if root == "/" {
				return errors.New("Option --root argument should not be set to /")
			}
			if err := c.GlobalSet("root", root); err != nil {
				return err
			}
		}
		return configureLogging(c)
	}
	return app
}

type logWriter struct{ next io.Writer }

func (w *logWriter) Write(p []byte) (int, error) {
	logrus.Error(string(p))
	if !logsToStderr() {
		return w.next.Write(p)
	}
	return len(p), nil
}

func configureLogging(c *cli.Context) error {
	if c.GlobalBool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	switch f := c.GlobalString("log-format"); f {
	case "", "text":
	case "json":
		logrus.SetFormatter(new(logrus.JSONFormatter))
	default:
		return errors.New("invalid log-format: " + f)
	}
	if path := c.GlobalString("log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return err
		}
		logrus.SetOutput(f)
	}
	return nil
}

func logsToStderr() bool {
	f, ok := logrus.StandardLogger().Out.(*os.File)
	return ok && f.Fd() == os.Stderr.Fd()
}

// fatal logs err and exits 1, runc's status for every command failure.
func fatal(err error) { fatalWithCode(err, 1) }

func fatalWithCode(err error, code int) {
	logrus.Error(err)
	if !logsToStderr() {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

func logLevelString() string {
	return fmt.Sprint(int(logrus.GetLevel()))
}
