package launcher

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Action is what Runner does with a container's process.
type Action int

const (
	// Create starts the container's init and leaves it waiting for start.
	Create Action = iota + 1
	// Run starts a process and lets it run at once: `run`, and every `exec`.
	Run
	// Restore brings a checkpointed container back.
	Restore
)

// Runner runs one process of a container with runc's command-line semantics.
type Runner struct {
	Container *libcontainer.Container
	Action    Action
	// Init is true for the container's first process, false for exec.
	Init bool
	// Detach leaves the process running and returns at once (always so for Create).
	Detach bool
	// DestroyOnExit removes the container when a foreground process ends or when starting fails.
	DestroyOnExit bool
	// Subreaper makes rune reap orphans of the container process while it waits in the foreground.
	Subreaper      bool
	ConsoleSocket  string
	PidfdSocket    string
	PidFile        string
	PreserveFDs    int
	ListenFDs      []*os.File
	SubCgroupPaths map[string]string
	CriuOpts       *libcontainer.CriuOpts
	LogLevel       string
	// BeforeStart may add files and environment to the process after all of runc's descriptors
	// (stdio, LISTEN_FDS, preserved fds) are placed, so the descriptor numbers it sees are final.
	BeforeStart func(p *libcontainer.Process) error
	// AfterStart runs once the process runs; an error kills the process and fails the command.
	AfterStart func(p *libcontainer.Process) error
}

func (r *Runner) detached() bool { return r.Detach || r.Action == Create }

// Run starts spec's process and, in the foreground, waits for its exit status.
func (r *Runner) Run(spec *specs.Process) (status int, retErr error) {
	defer func() {
		if retErr != nil {
			r.destroy()
		}
	}()
	if err := r.checkTerminal(spec); err != nil {
		return -1, err
	}
	process, err := NewProcess(spec)
	if err != nil {
		return -1, err
	}
	process.LogLevel = r.LogLevel
	process.Init = r.Init
	process.SubCgroupPaths = r.SubCgroupPaths
	if n := len(r.ListenFDs); n > 0 {
		process.Env = append(process.Env, "LISTEN_FDS="+strconv.Itoa(n), "LISTEN_PID=1")
		process.ExtraFiles = append(process.ExtraFiles, r.ListenFDs...)
	}
	base := 3 + len(process.ExtraFiles)
	for fd := base; fd < base+r.PreserveFDs; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return -1, fmt.Errorf("unable to stat preserved-fd %d (of %d): %w", fd-base, r.PreserveFDs, err)
		}
		process.ExtraFiles = append(process.ExtraFiles, os.NewFile(uintptr(fd), "PreserveFD:"+strconv.Itoa(fd)))
	}
	if r.BeforeStart != nil {
		if err := r.BeforeStart(process); err != nil {
			return -1, err
		}
	}
	detach := r.detached()
	relayC := newSignalRelay(r.Subreaper)
	io, err := setupStdio(process, r.Container, spec.Terminal, detach, r.ConsoleSocket)
	if err != nil {
		return -1, err
	}
	defer io.close()
	if r.PidfdSocket != "" {
		conn, err := net.Dial("unix", r.PidfdSocket)
		if err != nil {
			return -1, fmt.Errorf("connect to pidfd socket %s: %w", r.PidfdSocket, err)
		}
		defer conn.Close()
		f, err := conn.(*net.UnixConn).File()
		if err != nil {
			return -1, fmt.Errorf("pidfd socket %s: %w", r.PidfdSocket, err)
		}
		defer f.Close()
		process.PidfdSocket = f
	}

	switch r.Action {
	case Create:
		err = r.Container.Start(process)
	case Restore:
		err = r.Container.Restore(process, r.CriuOpts)
	case Run:
		err = r.Container.Run(process)
	default:
		err = fmt.Errorf("unknown action %d", r.Action)
	}
	if err != nil {
		return -1, err
	}
	if err := io.waitConsole(); err != nil {
		terminate(process)
		return -1, err
	}
	io.closeAfterRun()
	if r.AfterStart != nil {
		if err := r.AfterStart(process); err != nil {
			terminate(process)
			return -1, err
		}
	}
	if r.PidFile != "" {
		if err := writePidFile(r.PidFile, process); err != nil {
			terminate(process)
			return -1, err
		}
	}
	relay := <-relayC
	if detach {
		return 0, nil
	}
	status, err = relay.forward(process, io)
	if err != nil {
		terminate(process)
		return -1, err
	}
	r.destroy()
	return status, nil
}

func (r *Runner) checkTerminal(p *specs.Process) error {
	detach := r.detached()
	if detach && p.Terminal && r.ConsoleSocket == "" {
		return errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if (!detach || !p.Terminal) && r.ConsoleSocket != "" {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	return nil
}

func (r *Runner) destroy() {
	if r.DestroyOnExit {
		if err := r.Container.Destroy(); err != nil {
			logrus.Warn(err)
		}
	}
}

func terminate(p *libcontainer.Process) {
	_ = p.Signal(unix.SIGKILL)
	_, _ = p.Wait()
}

// writePidFile writes the pid atomically: readers never see a partial file.
func writePidFile(path string, p *libcontainer.Process) error {
	pid, err := p.Pid()
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_SYNC, 0o666)
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	f.Close()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pid file: %w", err)
	}
	return os.Rename(tmp, path)
}

// ListenFDs returns the sockets handed to rune by systemd socket activation, to pass them on.
func ListenFDs() []*os.File {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	files := make([]*os.File, 0, n)
	for fd := 3; fd < 3+n; fd++ {
		unix.CloseOnExec(fd)
		files = append(files, os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd)))
	}
	return files
}
