package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/urfave/cli"
)

var psCommand = cli.Command{
	Name:      "ps",
	Usage:     "ps displays the processes running inside a container",
	ArgsUsage: `<container-id> [ps options]`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "format, f", Value: "table", Usage: `select one of: table or json`},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, minArgs); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		pids, err := container.Processes()
		if err != nil {
			return err
		}
		switch c.String("format") {
		case "table":
		case "json":
			if pids == nil {
				pids = []int{}
			}
			return json.NewEncoder(os.Stdout).Encode(pids)
		default:
			return errors.New("invalid format option")
		}
		psArgs := c.Args()[1:]
		if len(psArgs) == 0 {
			psArgs = []string{"-ef"}
		}
		out, err := exec.Command("ps", psArgs...).Output()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		lines := strings.Split(string(out), "\n")
		pidCol, err := pidColumn(lines[0])
		if err != nil {
			return err
		}
		in := make(map[int]bool, len(pids))
		for _, p := range pids {
			in[p] = true
		}
		fmt.Println(lines[0])
		for _, line := range lines[1:] {
			fields := strings.Fields(line)
			if len(fields) <= pidCol {
				continue
			}
			pid, err := strconv.Atoi(fields[pidCol])
			if err != nil {
				return fmt.Errorf("unable to parse pid: %w", err)
			}
			if in[pid] {
				fmt.Println(line)
			}
		}
		return nil
	},
	SkipArgReorder: true,
}

func pidColumn(header string) (int, error) {
	for i, name := range strings.Fields(header) {
		if name == "PID" {
			return i, nil
		}
	}
	return -1, errors.New("couldn't find PID field in ps output")
}
