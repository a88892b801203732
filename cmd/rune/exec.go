package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/inclavare-containers/inclavare-go/launcher"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"
)

var execCommand = cli.Command{
	Name:  "exec",
	Usage: "execute new process inside the container",
	ArgsUsage: `<container-id> <command> [command options]  || -p process.json <container-id>

Where "<container-id>" is the name for the instance of the container and
"<command>" is the command to be executed in the container.
"<command>" can't be empty unless a "-p" flag provided.`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		cli.StringFlag{Name: "pidfd-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the exec process"},
		cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
		cli.StringSliceFlag{Name: "env, e", Usage: "set environment variables"},
		cli.BoolFlag{Name: "tty, t", Usage: "allocate a pseudo-TTY"},
		cli.StringFlag{Name: "user, u", Usage: "UID (format: <uid>[:<gid>])"},
		// A string slice: urfave/cli v1 copies an Int64Slice to its alias by appending its values
		// to the shared list again, which doubled every -g gid.
		cli.StringSliceFlag{Name: "additional-gids, g", Usage: "additional gids"},
		cli.StringFlag{Name: "process, p", Usage: "path to the process.json"},
		cli.BoolFlag{Name: "detach,d", Usage: "detach from the container's process"},
		cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
		cli.StringFlag{Name: "process-label", Usage: "set the asm process label for the process commonly used with selinux"},
		cli.StringFlag{Name: "apparmor", Usage: "set the apparmor profile for the process"},
		cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
		cli.StringSliceFlag{Name: "cap, c", Usage: "add a capability to the bounding set for the process"},
		cli.IntFlag{Name: "preserve-fds", Usage: "Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)"},
		cli.StringSliceFlag{Name: "cgroup", Usage: "run the process in an (existing) sub-cgroup(s). Format is [<controller>:]<cgroup>."},
		cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, minArgs); err != nil {
			return err
		}
		status, err := execProcess(c)
		if err == nil {
			os.Exit(status)
		}
		// 255 tells a caller that exec itself failed, not the process it ran.
		fatalWithCode(fmt.Errorf("exec failed: %w", err), 255)
		return nil
	},
	SkipArgReorder: true,
}

func execProcess(c *cli.Context) (int, error) {
	pidFile, err := absPidFile(c)
	if err != nil {
		return -1, err
	}
	container, err := getContainer(c)
	if err != nil {
		return -1, err
	}
	status, err := container.Status()
	if err != nil {
		return -1, err
	}
	if status == libcontainer.Stopped {
		return -1, errors.New("cannot exec in a stopped container")
	}
	if status == libcontainer.Paused && !c.Bool("ignore-paused") {
		return -1, errors.New("cannot exec in a paused container (use --ignore-paused to override)")
	}
	p, err := execSpec(c, container)
	if err != nil {
		return -1, err
	}
	est, err := enclavehost.LoadState(c.GlobalString("root"), container.ID())
	if err != nil {
		return -1, err
	}
	var beforeStart, afterStart func(*libcontainer.Process) error
	if est != nil {
		ex, err := enclavehost.NewExec(c.GlobalString("root"), container.ID(), est)
		if err != nil {
			return -1, err
		}
		// Also when the exec fails before its process runs.
		defer ex.Close()
		p.Args, p.Env = ex.Process(p.Args, p.Env)
		beforeStart = func(lp *libcontainer.Process) error {
			files, env, err := ex.Files(3 + len(lp.ExtraFiles))
			if err != nil {
				return err
			}
			lp.ExtraFiles = append(lp.ExtraFiles, files...)
			lp.Env = append(lp.Env, env)
			return nil
		}
		afterStart = func(*libcontainer.Process) error {
			ex.Close()
			return nil
		}
	}
	cgPaths, err := subCgroupPaths(c.StringSlice("cgroup"))
	if err != nil {
		return -1, err
	}
	r := &launcher.Runner{
		Container:      container,
		Action:         launcher.Run,
		ConsoleSocket:  c.String("console-socket"),
		PidfdSocket:    c.String("pidfd-socket"),
		Detach:         c.Bool("detach"),
		PidFile:        pidFile,
		PreserveFDs:    c.Int("preserve-fds"),
		SubCgroupPaths: cgPaths,
		LogLevel:       logLevelString(),
		BeforeStart:    beforeStart,
		AfterStart:     afterStart,
	}
	return r.Run(p)
}

// subCgroupPaths parses --cgroup values: "path" alone, or "ctrl[,ctrl]:path" per controller.
func subCgroupPaths(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	paths := make(map[string]string, len(args))
	for _, a := range args {
		ctrls, path, ok := strings.Cut(a, ":")
		if !ok {
			if len(args) != 1 {
				return nil, fmt.Errorf("invalid --cgroup argument: %s (missing <controller>: prefix)", a)
			}
			paths[""] = a
			continue
		}
		for _, ctrl := range strings.Split(ctrls, ",") {
			if ctrl == "" {
				return nil, fmt.Errorf("invalid --cgroup argument: %s (empty <controller> prefix)", a)
			}
			if _, dup := paths[ctrl]; dup {
				return nil, fmt.Errorf("invalid --cgroup argument(s): controller %s specified multiple times", ctrl)
			}
			paths[ctrl] = path
		}
	}
	return paths, nil
}

// execSpec builds the exec'd process: from --process, or from the bundle's process with the
// command line's changes.
func execSpec(c *cli.Context, container *libcontainer.Container) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		return &p, launcher.ValidateProcess(&p)
	}
	bundle, ok := utils.SearchLabels(container.Config().Labels, "bundle")
	if !ok {
		return nil, errors.New("bundle not found in labels")
	}
	spec, err := launcher.LoadSpec(bundle)
	if err != nil {
		return nil, err
	}
	p := spec.Process
	args := c.Args()
	if len(args) < 2 {
		return nil, errors.New("exec args cannot be empty")
	}
	p.Args = args[1:]
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	if ap := c.String("apparmor"); ap != "" {
		p.ApparmorProfile = ap
	}
	if l := c.String("process-label"); l != "" {
		p.SelinuxLabel = l
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, cp := range caps {
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, cp)
			p.Capabilities.Effective = append(p.Capabilities.Effective, cp)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, cp)
			if p.Capabilities.Inheritable != nil {
				p.Capabilities.Ambient = append(p.Capabilities.Ambient, cp)
			}
		}
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	p.Terminal = c.Bool("tty")
	if c.IsSet("no-new-privs") {
		p.NoNewPrivileges = c.Bool("no-new-privs")
	}
	if u := c.String("user"); u != "" {
		uids, gids, hasGID := strings.Cut(u, ":")
		if hasGID {
			gid, err := strconv.Atoi(gids)
			if err != nil {
				return nil, fmt.Errorf("bad gid: %w", err)
			}
			p.User.GID = uint32(gid)
		}
		uid, err := strconv.Atoi(uids)
		if err != nil {
			return nil, fmt.Errorf("bad uid: %w", err)
		}
		p.User.UID = uint32(uid)
	}
	for _, v := range c.StringSlice("additional-gids") {
		gid, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value %q for flag -g: %w", v, err)
		}
		if gid < 0 || gid > math.MaxUint32 {
			return nil, fmt.Errorf("additional-gids must be a positive number %d", gid)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(gid))
	}
	return p, launcher.ValidateProcess(p)
}
