package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/inclavare-containers/inclavare-go/launcher"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/urfave/cli"
)

type action int

const (
	actionCreate action = iota
	actionRun
	actionRestore
)

func absPath(p string) (string, error) { return filepath.Abs(p) }

// startContainer is create, run and restore: load the bundle, create the container, start its init.
func startContainer(c *cli.Context, act action, criu ...*libcontainer.CriuOpts) (int, error) {
	pidFile, err := absPidFile(c)
	if err != nil {
		return -1, err
	}
	id := c.Args().First()
	if id == "" {
		return -1, errEmptyID
	}
	bundle := c.String("bundle")
	if bundle != "" {
		// specconv records the working directory as the bundle and resolves relative paths from it.
		if err := os.Chdir(bundle); err != nil {
			return -1, err
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return -1, err
	}
	spec, err := launcher.LoadSpec(cwd)
	if err != nil {
		return -1, err
	}
	root := c.GlobalString("root")
	enc, err := enclavehost.Create(context.Background(), spec, enclavehost.CreateOptions{Root: root, ID: id, Bundle: cwd, Manifest: manifestPolicyFrom(c)})
	if err != nil {
		return -1, err
	}
	if enc != nil && act == actionRestore {
		return -1, errors.New("restore of enclave containers is not supported: enclave memory cannot be checkpointed")
	}
	rootless, err := rootlessCgroups(c)
	if err != nil {
		return -1, err
	}
	container, err := launcher.CreateContainer(spec, launcher.CreateOptions{
		Root:            root,
		ID:              id,
		SystemdCgroup:   c.GlobalBool("systemd-cgroup"),
		NoPivotRoot:     c.Bool("no-pivot"),
		NoNewKeyring:    c.Bool("no-new-keyring"),
		RootlessCgroups: rootless,
	})
	if err != nil {
		return -1, err
	}
	r := &launcher.Runner{
		Container:     container,
		Init:          true,
		Subreaper:     !c.Bool("no-subreaper"),
		DestroyOnExit: !c.Bool("keep"),
		ListenFDs:     launcher.ListenFDs(),
		ConsoleSocket: c.String("console-socket"),
		PidfdSocket:   c.String("pidfd-socket"),
		Detach:        c.Bool("detach"),
		PidFile:       pidFile,
		PreserveFDs:   c.Int("preserve-fds"),
		LogLevel:      logLevelString(),
	}
	switch act {
	case actionCreate:
		r.Action = launcher.Create
		if enc != nil {
			// The runelet must run now to initialise the enclave; it waits for start by itself.
			r.Action, r.Detach = launcher.Run, true
		}
	case actionRun:
		r.Action = launcher.Run
	case actionRestore:
		r.Action = launcher.Restore
		if len(criu) > 0 {
			r.CriuOpts = criu[0]
		}

	default:
		return -1, fmt.Errorf("unknown action %d", act)
	}
	if enc != nil {
		// PID 1 gets its host socket, its crash pipe and its config after runc's descriptors.
		var pidFiles []*os.File
		r.BeforeStart = func(p *libcontainer.Process) error {
			files, env, err := enc.PID1Files(3 + len(p.ExtraFiles))
			if err != nil {
				return err
			}
			pidFiles = files
			p.ExtraFiles = append(p.ExtraFiles, files...)
			p.Env = append(p.Env, env)
			return nil
		}
		r.AfterStart = func(p *libcontainer.Process) error {
			return enc.AwaitReady(context.Background(), p, pidFiles, act == actionRun)
		}
	}
	return r.Run(spec.Process)
}
