package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/moby/sys/userns"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"
)

var checkpointCommand = cli.Command{
	Name:  "checkpoint",
	Usage: "checkpoint a running container",
	ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container to be
checkpointed.`,
	Description: `The checkpoint command saves the state of the container instance (needs CRIU).`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "image-path", Value: "", Usage: "path for saving criu image files"},
		cli.StringFlag{Name: "work-path", Value: "", Usage: "path for saving work files and logs"},
		cli.StringFlag{Name: "parent-path", Value: "", Usage: "path for previous criu image files in pre-dump"},
		cli.BoolFlag{Name: "leave-running", Usage: "leave the process running after checkpointing"},
		cli.BoolFlag{Name: "tcp-established", Usage: "allow open tcp connections"},
		cli.BoolFlag{Name: "tcp-skip-in-flight", Usage: "skip in-flight tcp connections"},
		cli.BoolFlag{Name: "link-remap", Usage: "allow one to link unlinked files back when possible"},
		cli.BoolFlag{Name: "ext-unix-sk", Usage: "allow external unix sockets"},
		cli.BoolFlag{Name: "shell-job", Usage: "allow shell jobs"},
		cli.BoolFlag{Name: "lazy-pages", Usage: "use userfaultfd to lazily restore memory pages"},
		cli.IntFlag{Name: "status-fd", Value: -1, Usage: "criu writes \\0 to this FD once lazy-pages is ready"},
		cli.StringFlag{Name: "page-server", Value: "", Usage: "ADDRESS:PORT of the page server"},
		cli.BoolFlag{Name: "file-locks", Usage: "handle file locks, for safety"},
		cli.BoolFlag{Name: "pre-dump", Usage: "dump container's memory information only, leave the container running after this"},
		cli.StringFlag{Name: "manage-cgroups-mode", Value: "", Usage: "cgroups mode: soft|full|strict|ignore (default: soft)"},
		cli.StringSliceFlag{Name: "empty-ns", Usage: "create a namespace, but don't restore its properties"},
		cli.BoolFlag{Name: "auto-dedup", Usage: "enable auto deduplication of memory images"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, exactArgs); err != nil {
			return err
		}
		if err := needCRIU("checkpoint"); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		if est, err := enclavehost.LoadState(c.GlobalString("root"), container.ID()); err != nil {
			return err
		} else if est != nil {
			return errors.New("checkpoint of enclave containers is not supported: enclave memory cannot be dumped")
		}
		status, err := container.Status()
		if err != nil {
			return err
		}
		if status == libcontainer.Created || status == libcontainer.Stopped {
			return fmt.Errorf("Container cannot be checkpointed in %s state", status.String())
		}
		opts, err := criuOptions(c)
		if err != nil {
			return err
		}
		err = container.Checkpoint(opts)
		if err == nil && !opts.LeaveRunning && !opts.PreDump {
			if err := container.Destroy(); err != nil {
				logrus.Warn(err)
			}
		}
		return err
	},
}

// needCRIU fails early and clearly where CRIU is missing, instead of deep inside libcontainer.
func needCRIU(cmd string) error {
	if _, err := exec.LookPath("criu"); err != nil {
		return fmt.Errorf("%s needs CRIU, which is not installed here (criu not found in PATH)", cmd)
	}
	if os.Geteuid() != 0 || userns.RunningInUserNS() {
		logrus.Warn("rune " + cmd + " is untested with rootless containers")
	}
	return nil
}

func criuOptions(c *cli.Context) (*libcontainer.CriuOpts, error) {
	imagePath := c.String("image-path")
	if imagePath == "" {
		cwd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		imagePath = filepath.Join(cwd, "checkpoint")
	}
	if err := os.MkdirAll(imagePath, 0o600); err != nil {
		return nil, err
	}
	parent := c.String("parent-path")
	if parent != "" {
		if filepath.IsAbs(parent) {
			return nil, errors.New("--parent-path must be relative")
		}
		real := filepath.Join(imagePath, parent)
		fi, err := os.Stat(real)
		if err == nil && !fi.IsDir() {
			err = &os.PathError{Op: "stat", Path: real, Err: unix.ENOTDIR}
		}
		if err != nil {
			return nil, fmt.Errorf("invalid --parent-path: %w", err)
		}
	}
	opts := &libcontainer.CriuOpts{
		ImagesDirectory:         imagePath,
		WorkDirectory:           c.String("work-path"),
		ParentImage:             parent,
		LeaveRunning:            c.Bool("leave-running"),
		TcpEstablished:          c.Bool("tcp-established"),
		TcpSkipInFlight:         c.Bool("tcp-skip-in-flight"),
		LinkRemap:               c.Bool("link-remap"),
		ExternalUnixConnections: c.Bool("ext-unix-sk"),
		ShellJob:                c.Bool("shell-job"),
		FileLocks:               c.Bool("file-locks"),
		PreDump:                 c.Bool("pre-dump"),
		AutoDedup:               c.Bool("auto-dedup"),
		LazyPages:               c.Bool("lazy-pages"),
		StatusFd:                c.Int("status-fd"),
		LsmProfile:              c.String("lsm-profile"),
		LsmMountContext:         c.String("lsm-mount-context"),
		ManageCgroupsMode:       c.String("manage-cgroups-mode"),
	}
	if ps := c.String("page-server"); ps != "" {
		host, port, err := net.SplitHostPort(ps)
		if err != nil || host == "" || port == "" {
			return nil, errors.New("Use --page-server ADDRESS:PORT to specify page server")
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, errors.New("Invalid port number")
		}
		opts.PageServer = libcontainer.CriuPageServerInfo{Address: host, Port: int32(n)}
	}
	// The network namespace is always left empty: CRIU cannot restore its configuration.
	mask := unix.CLONE_NEWNET
	for _, ns := range c.StringSlice("empty-ns") {
		if specs.LinuxNamespaceType(ns) != specs.NetworkNamespace {
			return nil, fmt.Errorf("namespace %q is not supported", ns)
		}
	}
	opts.EmptyNs = uint32(mask)
	return opts, nil
}
