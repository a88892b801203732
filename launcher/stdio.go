package launcher

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
)

// stdio owns whatever connects a container process to rune's own stdio: nothing (inherited),
// pipes copied both ways, or a console whose master comes back over a socket.
type stdio struct {
	host     console.Console
	epoller  *console.Epoller
	cons     *console.EpollConsole
	consoleC chan error
	afterRun []io.Closer // closed once the process is running
	atClose  []io.Closer // closed when rune is done with the process
	copiers  sync.WaitGroup
}

// setupStdio wires process according to runc's rules: a detached process inherits rune's stdio or
// sends its console to consoleSocket; a foreground one gets pipes or a console relayed by rune.
func setupStdio(process *libcontainer.Process, c *libcontainer.Container, terminal, detach bool, consoleSocket string) (_ *stdio, retErr error) {
	s := &stdio{}
	if terminal {
		process.Stdin, process.Stdout, process.Stderr = nil, nil, nil
		if detach {
			conn, err := net.Dial("unix", consoleSocket)
			if err != nil {
				return nil, fmt.Errorf("connect to console socket %s: %w", consoleSocket, err)
			}
			f, err := conn.(*net.UnixConn).File()
			if err != nil {
				conn.Close()
				return nil, fmt.Errorf("console socket %s: %w", consoleSocket, err)
			}
			s.afterRun = append(s.afterRun, conn, f)
			process.ConsoleSocket = f
			return s, nil
		}
		if err := s.findHostConsole(); err != nil {
			return nil, err
		}
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return nil, fmt.Errorf("console socket pair: %w", err)
		}
		process.ConsoleSocket = child
		s.afterRun = append(s.afterRun, parent, child)
		s.consoleC = make(chan error, 1)
		go func() { s.consoleC <- s.relayConsole(parent) }()
		return s, nil
	}
	if detach {
		process.Stdin, process.Stdout, process.Stderr = os.Stdin, os.Stdout, os.Stderr
		return s, nil
	}
	cfg := c.Config()
	uid, err := cfg.HostRootUID()
	if err != nil {
		return nil, err
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return nil, err
	}
	pipes, err := process.InitializeIO(uid, gid)
	if err != nil {
		return nil, fmt.Errorf("stdio pipes: %w", err)
	}
	s.atClose = append(s.atClose, pipes.Stdin, pipes.Stdout, pipes.Stderr)
	for _, end := range []any{process.Stdin, process.Stdout, process.Stderr} {
		if cl, ok := end.(io.Closer); ok {
			s.afterRun = append(s.afterRun, cl)
		}
	}
	go func() {
		_, _ = io.Copy(pipes.Stdin, os.Stdin)
		_ = pipes.Stdin.Close()
	}()
	s.copiers.Add(2)
	go s.copy(os.Stdout, pipes.Stdout)
	go s.copy(os.Stderr, pipes.Stderr)
	return s, nil
}

func (s *stdio) copy(w io.Writer, r io.ReadCloser) {
	defer s.copiers.Done()
	_, _ = io.Copy(w, r)
	_ = r.Close()
}

func (s *stdio) findHostConsole() error {
	for _, f := range []*os.File{os.Stderr, os.Stdout, os.Stdin} {
		c, err := console.ConsoleFromFile(f)
		if err == nil {
			s.host = c
			return nil
		}
		if !errors.Is(err, console.ErrNotAConsole) {
			return fmt.Errorf("unable to get console: %w", err)
		}
	}
	tty, err := os.Open("/dev/tty")
	if err != nil {
		return fmt.Errorf("a terminal was requested but rune has none: %w", err)
	}
	c, err := console.ConsoleFromFile(tty)
	if err != nil {
		return fmt.Errorf("unable to get console: %w", err)
	}
	s.host = c
	return nil
}

// relayConsole receives the container's console master and copies it to and from rune's terminal.
func (s *stdio) relayConsole(sock *os.File) (retErr error) {
	f, err := utils.RecvFile(sock)
	if err != nil {
		return fmt.Errorf("receive console: %w", err)
	}
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		return err
	}
	if err := console.ClearONLCR(c.Fd()); err != nil {
		return err
	}
	ep, err := console.NewEpoller()
	if err != nil {
		return err
	}
	ec, err := ep.Add(c)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = ec.Close()
		}
	}()
	go func() { _ = ep.Wait() }()
	go func() { _, _ = io.Copy(ec, os.Stdin) }()
	s.copiers.Add(1)
	go s.copy(os.Stdout, ec)
	if err := s.host.SetRaw(); err != nil {
		return fmt.Errorf("failed to set the terminal from the stdin: %w", err)
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt)
		<-ch
		_ = s.host.Reset()
		os.Exit(0)
	}()
	s.epoller, s.cons = ep, ec
	s.atClose = append(s.atClose, ec)
	return nil
}

func (s *stdio) waitConsole() error {
	if s.consoleC == nil {
		return nil
	}
	return <-s.consoleC
}

func (s *stdio) resize() {
	if s.cons != nil && s.host != nil {
		_ = s.cons.ResizeFrom(s.host)
	}
}

func (s *stdio) closeAfterRun() {
	for _, c := range s.afterRun {
		_ = c.Close()
	}
	s.afterRun = nil
}

// close waits for the output copiers to drain, so nothing the process wrote is lost.
func (s *stdio) close() {
	s.closeAfterRun()
	if s.cons != nil && s.epoller != nil {
		_ = s.cons.Shutdown(s.epoller.CloseConsole)
	}
	s.copiers.Wait()
	for _, c := range s.atClose {
		_ = c.Close()
	}
	if s.host != nil {
		_ = s.host.Reset()
	}
}
