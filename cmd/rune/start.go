package main

import (
	"errors"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
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
		est, err := loadEnclaveState(root, container.ID())
		if err != nil {
			return err
		}
		if est != nil {
			status = enclaveStatus(root, container, status)
		}
		switch status {
		case libcontainer.Created:
			if est != nil {
				return startWorkload(root, container.ID())
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
