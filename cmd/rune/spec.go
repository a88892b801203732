package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/inclavare-containers/inclavare-go/launcher"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/urfave/cli"
)

var specCommand = cli.Command{
	Name:      "spec",
	Usage:     "create a new specification file",
	ArgsUsage: "",
	Description: `The spec command creates the new specification file named "config.json" for
the bundle. Set ENCLAVE_TYPE and ENCLAVE_RUNTIME_PATH in its process env (or the
enclave.type and enclave.runtime.path annotations) to make it an enclave container.`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "bundle, b", Value: "", Usage: "path to the root of the bundle directory"},
		cli.BoolFlag{Name: "rootless", Usage: "generate a configuration for a rootless container"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, exactArgs); err != nil {
			return err
		}
		spec := specconv.Example()
		if c.Bool("rootless") {
			specconv.ToRootless(spec)
		}
		if b := c.String("bundle"); b != "" {
			if err := os.Chdir(b); err != nil {
				return err
			}
		}
		if _, err := os.Stat(launcher.SpecFile); err == nil {
			return fmt.Errorf("File %s exists. Remove it first", launcher.SpecFile)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		data, err := json.MarshalIndent(spec, "", "\t")
		if err != nil {
			return err
		}
		return os.WriteFile(launcher.SpecFile, data, 0o666)
	},
}
