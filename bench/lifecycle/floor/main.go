// Command libcontainer-floor is the lifecycle benchmark's floor: the least a runc-compatible
// create / start / delete can do on the libcontainer that rune links (the same version, the same
// spec conversion), with no CLI framework, no logging set-up, no enclave code and no checks beyond
// libcontainer's own. It is a measuring stick, not a runtime: it knows only the commands and flags
// the benchmark uses (`create --bundle B --pid-file F ID`, `start ID`, `delete [--force] ID`).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	_ "github.com/opencontainers/cgroups/devices" // device rules, as rune and runc set them
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins the namespaces for `init`
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/launcher"
)

// root holds the containers' state, apart from rune's and runc's.
const root = "/run/libcontainer-floor"

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "libcontainer-floor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: create --bundle B --pid-file F ID | start ID | delete [--force] ID")
	}
	cmd, args := args[0], args[1:]
	flags := map[string]string{}
	force := false
	for len(args) > 1 {
		switch args[0] {
		case "--bundle", "--pid-file":
			flags[args[0]], args = args[1], args[2:]
		case "--force", "-f":
			force, args = true, args[1:]
		default:
			return fmt.Errorf("%s: unknown flag %s", cmd, args[0])
		}
	}
	if len(args) != 1 {
		return fmt.Errorf("%s: want one container id", cmd)
	}
	id := args[0]
	switch cmd {
	case "create":
		return create(id, flags["--bundle"], flags["--pid-file"])
	case "start":
		c, err := libcontainer.Load(root, id)
		if err != nil {
			return err
		}
		return c.Exec()
	case "delete":
		c, err := libcontainer.Load(root, id)
		if err != nil {
			return err
		}
		if force {
			_ = c.Signal(unix.SIGKILL)
		}
		return c.Destroy()
	}
	return fmt.Errorf("unknown command %s", cmd)
}

func create(id, bundle, pidFile string) error {
	if err := os.Chdir(bundle); err != nil {
		return err
	}
	data, err := os.ReadFile("config.json")
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: &spec})
	if err != nil {
		return err
	}
	c, err := libcontainer.Create(root, id, cfg)
	if err != nil {
		return err
	}
	p, err := launcher.NewProcess(spec.Process) // the spec's process as libcontainer takes it
	if err != nil {
		_ = c.Destroy()
		return err
	}
	p.Init = true
	p.Stdin, p.Stdout, p.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Start(p); err != nil {
		_ = c.Destroy()
		return err
	}
	pid, err := p.Pid()
	if err == nil && pidFile != "" {
		tmp := filepath.Join(filepath.Dir(pidFile), "."+filepath.Base(pidFile))
		if err = os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err == nil {
			err = os.Rename(tmp, pidFile)
		}
	}
	if err != nil {
		_ = p.Signal(unix.SIGKILL)
		_ = c.Destroy()
	}
	return err
}
