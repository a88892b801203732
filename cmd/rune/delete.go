package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"
)

var deleteCommand = cli.Command{
	Name:  "delete",
	Usage: "delete any resources held by the container often used with detached container",
	ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container.`,
	Flags: []cli.Flag{
		cli.BoolFlag{Name: "force, f", Usage: "Forcibly deletes the container if it is still running (uses SIGKILL)"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, exactArgs); err != nil {
			return err
		}
		id := c.Args().First()
		force := c.Bool("force")
		container, err := getContainer(c)
		if err != nil {
			if errors.Is(err, libcontainer.ErrNotExist) {
				// A state directory without a readable state (an interrupted create) is removed anyway.
				if err := validID(id); err == nil {
					path := filepath.Join(c.GlobalString("root"), id)
					if e := os.RemoveAll(path); e != nil {
						fmt.Fprintf(os.Stderr, "remove %s: %v\n", path, e)
					}
				}
				if force {
					return nil
				}
			}
			return err
		}
		s, err := container.Status()
		if err != nil {
			return err
		}
		if force && s != libcontainer.Stopped {
			return killAndDestroy(container)
		}
		s = enclaveStatus(c.GlobalString("root"), container, s)
		switch s {
		case libcontainer.Stopped:
			return container.Destroy()
		case libcontainer.Created:
			return killAndDestroy(container)
		default:
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, s)
		}
	},
}

// killAndDestroy SIGKILLs the container's init and removes the container once init is gone.
func killAndDestroy(c *libcontainer.Container) error {
	_ = c.Signal(unix.SIGKILL)
	// Poll finely at first (a killed init is usually gone within a few milliseconds; delete
	// latency is on every container's critical path), then every 10 ms, for 10 s in all.
	deadline := time.Now().Add(10 * time.Second)
	for wait := time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 10*time.Millisecond) {
		if err := c.Signal(unix.Signal(0)); err != nil {
			return c.Destroy()
		}
		time.Sleep(wait)
	}
	return errors.New("container init still running")
}

// validID rejects ids that could name a path outside the state root.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}
