package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/console"
	"github.com/containerd/fifo"
)

// consolePlatform copies between a container's terminal and containerd's stdio FIFOs (or a
// file:// log) with one epoll loop for every terminal of the shim. It implements
// containerd's stdio.Platform, which process.Init uses for terminal containers.
type consolePlatform struct {
	epoller *console.Epoller
}

func newConsolePlatform() (*consolePlatform, error) {
	e, err := console.NewEpoller()
	if err != nil {
		return nil, fmt.Errorf("create console epoller: %w", err)
	}
	go e.Wait()
	return &consolePlatform{epoller: e}, nil
}

// CopyConsole starts copying stdin into the terminal and the terminal into stdout. wg is
// done when all output has been copied.
func (p *consolePlatform) CopyConsole(ctx context.Context, con console.Console, id, stdin, stdout, stderr string, wg *sync.WaitGroup) (console.Console, error) {
	ec, err := p.epoller.Add(con)
	if err != nil {
		return nil, fmt.Errorf("watch terminal of %s: %w", id, err)
	}
	out, err := openConsoleOutput(ctx, stdout)
	if err != nil {
		return nil, fmt.Errorf("open terminal output of %s: %w", id, err)
	}
	if stdin != "" {
		in, err := fifo.OpenFifo(context.Background(), stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("open terminal input of %s: %w", id, err)
		}
		go func() {
			_, _ = io.Copy(ec, in)
			// The client closed stdin: the terminal gets EOF.
			_ = ec.Shutdown(p.epoller.CloseConsole)
			_ = in.Close()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(out, ec)
		out.Close()
	}()
	return ec, nil
}

// openConsoleOutput opens stdout: a FIFO path (held open for reading too, so the copy
// survives a client that reconnects) or a file:// URI.
func openConsoleOutput(ctx context.Context, stdout string) (io.WriteCloser, error) {
	u, err := url.Parse(stdout)
	if err != nil {
		return nil, fmt.Errorf("parse stdout %q: %w", stdout, err)
	}
	switch u.Scheme {
	case "file":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		return os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	case "":
		w, err := fifo.OpenFifo(ctx, stdout, syscall.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		r, err := fifo.OpenFifo(ctx, stdout, syscall.O_RDONLY, 0)
		if err != nil {
			w.Close()
			return nil, err
		}
		return &fifoPair{w: w, r: r}, nil
	}
	return nil, fmt.Errorf("stdout %q: scheme %q is not supported with a terminal (want a FIFO or file://)", stdout, u.Scheme)
}

type fifoPair struct{ w, r io.ReadWriteCloser }

func (f *fifoPair) Write(b []byte) (int, error) { return f.w.Write(b) }
func (f *fifoPair) Close() error                { return errors.Join(f.w.Close(), f.r.Close()) }

// ShutdownConsole stops copying from a terminal.
func (p *consolePlatform) ShutdownConsole(ctx context.Context, con console.Console) error {
	ec, ok := con.(*console.EpollConsole)
	if !ok {
		return fmt.Errorf("terminal is a %T, not one this shim watches", con)
	}
	return ec.Shutdown(p.epoller.CloseConsole)
}

// Close stops the epoll loop.
func (p *consolePlatform) Close() error { return p.epoller.Close() }
