package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/moby/sys/userns"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
)

const (
	exactArgs = iota
	minArgs
	maxArgs
)

// checkArgs enforces a command's argument count with runc's message and usage output.
func checkArgs(c *cli.Context, expected, kind int) error {
	var err error
	name := c.Command.Name
	switch kind {
	case exactArgs:
		if c.NArg() != expected {
			err = fmt.Errorf("%s: %q requires exactly %d argument(s)", os.Args[0], name, expected)
		}
	case minArgs:
		if c.NArg() < expected {
			err = fmt.Errorf("%s: %q requires a minimum of %d argument(s)", os.Args[0], name, expected)
		}
	case maxArgs:
		if c.NArg() > expected {
			err = fmt.Errorf("%s: %q requires a maximum of %d argument(s)", os.Args[0], name, expected)
		}
	}
	if err != nil {
		fmt.Printf("Incorrect Usage.\n\n")
		_ = cli.ShowCommandHelp(c, name)
	}
	return err
}

var errEmptyID = errors.New("container id cannot be empty")

// getContainer loads the container named by the first argument.
func getContainer(c *cli.Context) (*libcontainer.Container, error) {
	id := c.Args().First()
	if id == "" {
		return nil, errEmptyID
	}
	return libcontainer.Load(c.GlobalString("root"), id)
}

// rootlessCgroups decides, as runc does, whether cgroup errors are to be tolerated.
func rootlessCgroups(c *cli.Context) (bool, error) {
	switch v := strings.ToLower(c.GlobalString("rootless")); v {
	case "", "auto":
	default:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("invalid --rootless value %q: %w", v, err)
		}
		return b, nil
	}
	if os.Geteuid() != 0 {
		return true, nil
	}
	// Root inside a user namespace usually cannot write cgroups unless systemd delegates them.
	return userns.RunningInUserNS() && !c.GlobalBool("systemd-cgroup"), nil
}

// absPidFile makes --pid-file absolute before anything changes the working directory.
func absPidFile(c *cli.Context) (string, error) {
	p := c.String("pid-file")
	if p == "" {
		return "", nil
	}
	return absPath(p)
}

// enclaveStatus is libcontainer's status corrected for an enclave container that was created but
// not started: its runelet runs, but the workload does not.
func enclaveStatus(root string, c *libcontainer.Container, status libcontainer.Status) libcontainer.Status {
	if status != libcontainer.Running {
		return status
	}
	st, err := enclavehost.LoadState(root, c.ID())
	if err == nil && st != nil && !st.Started(root, c.ID()) {
		return libcontainer.Created
	}
	return status
}
