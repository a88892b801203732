package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"
)

var startCommand = cli.Command{
	Name:  "start",
	Usage: "executes the user defined process in a created container",
	ArgsUsage: `<container-id>

Where "<container-id>" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host.`,
	Description: `The start command executes the user defined process in a created container.`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, exactArgs); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		status, err := container.Status()
		if err != nil {
			return err
		}
		root := c.GlobalString("root")
		est, err := enclavehost.LoadState(root, container.ID())
		if err != nil {
			return err
		}
		if est != nil {
			status = enclaveStatus(root, container, status)
		}
		switch status {
		case libcontainer.Created:
			if est != nil {
				if err := enclavehost.StartWorkload(context.Background(), root, container.ID()); err != nil {
					// As after a failed runc start, the container is stopped, not left created with
					// its init waiting: engines (containerd's client) delete a failed task only
					// once it has stopped, and would otherwise leak it.
					stopInit(container)
					return err
				}
				return nil
			}
			return container.Exec()
		case libcontainer.Stopped:
			return errors.New("cannot start a container that has stopped")
		case libcontainer.Running:
			return errors.New("cannot start an already running container")
		default:
			return fmt.Errorf("cannot start a container in the %s state", status)
		}
	},
}

// stopInit kills the container's init and waits (up to stopInitTimeout) until it is gone: exited
// and reaped by its parent (the shim), so that the engine, which deletes a failed task only once
// it has stopped, sees it stopped as soon as this start returns.
func stopInit(container *libcontainer.Container) {
	st, err := container.State()
	if err != nil || st.InitProcessPid <= 0 {
		return
	}
	// A pidfd: the process is waited for, not whatever might reuse its pid.
	pidfd, err := unix.PidfdOpen(st.InitProcessPid, 0)
	if err != nil {
		return
	}
	defer unix.Close(pidfd)
	if err := container.Signal(unix.SIGKILL); err != nil {
		return
	}
	deadline := time.Now().Add(stopInitTimeout)
	for time.Now().Before(deadline) {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err == unix.ESRCH {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const stopInitTimeout = 10 * time.Second
