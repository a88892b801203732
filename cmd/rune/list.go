package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
)

var listCommand = cli.Command{
	Name:  "list",
	Usage: "lists containers started by rune with the given root",
	ArgsUsage: `

Where the given root is specified via the global option "--root"
(default: "/run/rune").`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "format, f", Value: "table", Usage: `select one of: table or json`},
		cli.BoolFlag{Name: "quiet, q", Usage: "display only container IDs"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, exactArgs); err != nil {
			return err
		}
		states, err := listContainers(c)
		if err != nil {
			return err
		}
		if c.Bool("quiet") {
			for _, s := range states {
				fmt.Println(s.ID)
			}
			return nil
		}
		switch c.String("format") {
		case "table":
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range states {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.InitProcessPid, s.Status, s.Bundle,
					s.Created.Format(time.RFC3339Nano), s.Owner)
			}
			return w.Flush()
		case "json":
			return json.NewEncoder(os.Stdout).Encode(states)
		default:
			return errors.New("invalid format option")
		}
	},
}

func listContainers(c *cli.Context) ([]containerState, error) {
	root := c.GlobalString("root")
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !c.GlobalIsSet("root") {
			return nil, nil
		}
		return nil, err
	}
	var out []containerState
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		container, err := libcontainer.Load(root, e.Name())
		if err != nil {
			fmt.Fprintf(os.Stderr, "load container %s: %v\n", e.Name(), err)
			continue
		}
		s, err := describe(root, container, ownerOf(fi))
		if err != nil {
			fmt.Fprintf(os.Stderr, "state for %s: %v\n", e.Name(), err)
			continue
		}
		out = append(out, *s)
	}
	return out, nil
}
