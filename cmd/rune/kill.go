package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"
)

var killCommand = cli.Command{
	Name:  "kill",
	Usage: "kill sends the specified signal (default: SIGTERM) to the container's init process",
	ArgsUsage: `<container-id> [signal]

Where "<container-id>" is the name for the instance of the container and
"[signal]" is the signal to be sent to the init process.`,
	Flags: []cli.Flag{
		cli.BoolFlag{Name: "all, a", Usage: "(obsoleted, do not use)", Hidden: true},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, minArgs); err != nil {
			return err
		}
		if err := checkArgs(c, 2, maxArgs); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		raw := c.Args().Get(1)
		if raw == "" {
			raw = "SIGTERM"
		}
		sig, err := parseSignal(raw)
		if err != nil {
			return err
		}
		err = container.Signal(sig)
		if errors.Is(err, libcontainer.ErrNotRunning) && c.Bool("all") {
			err = nil
		}
		return err
	},
}

// parseSignal accepts a number, a name, or a name without its SIG prefix, in any case. Signal 0
// delivers nothing and checks that the container's init runs, as kill(2) and runc do.
func parseSignal(raw string) (unix.Signal, error) {
	if n, err := strconv.Atoi(raw); err == nil {
		if n < 0 || n > 64 {
			return -1, fmt.Errorf("invalid signal number %d", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(raw)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return -1, fmt.Errorf("unknown signal %q", raw)
}
