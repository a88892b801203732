package pal

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// DefaultLogLevel is what pal_init receives when ENCLAVE_RUNTIME_LOGLEVEL is
// unset, as in the original rune.
const DefaultLogLevel = "info"

type libState int

const (
	stateLoaded libState = iota
	stateInitialized
	stateDestroyed
)

// Library is a loaded PAL. It implements enclave.Runtime.
type Library struct {
	path     string // as given to Load
	resolved string // after symbolic links
	id       fileID
	digest   [sha256.Size]byte
	version  int
	syms     symbols

	mu       sync.Mutex
	state    libState
	args     string // exactly what pal_init received
	logLevel string
}

var _ enclave.Runtime = (*Library)(nil)

// Version is the PAL API version the library implements (1..MaxVersion).
func (l *Library) Version() int { return l.version }

// Path is the library's path with symbolic links resolved.
func (l *Library) Path() string { return l.resolved }

// Digest is the SHA-256 of the library file as loaded.
func (l *Library) Digest() [sha256.Size]byte { return l.digest }

// InitArgs joins ENCLAVE_RUNTIME_ARGS (already split at commas) into the
// string pal_init receives: the pieces joined by single spaces, as the
// original rune did ("a,b" arrives as "a b").
func InitArgs(args []string) string { return strings.Join(args, " ") }

func effectiveLogLevel(level string) string {
	if level == "" {
		return DefaultLogLevel
	}
	return level
}

// Init calls pal_init with cfg's runtime args and log level (pal_get_version
// was already called by Load). cfg.RuntimePath, when set, must name the
// loaded file.
func (l *Library) Init(ctx context.Context, cfg enclave.Config) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pal_init: %w", err)
	}
	if cfg.RuntimePath != "" {
		fi, err := os.Stat(cfg.RuntimePath)
		if err != nil || !sameID(fi, l.id) {
			return fmt.Errorf("pal_init: configuration names enclave runtime %q but %q is loaded", cfg.RuntimePath, l.resolved)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.state {
	case stateInitialized:
		return errors.New("pal_init: enclave runtime already initialized")
	case stateDestroyed:
		return errors.New("pal_init: enclave runtime already destroyed")
	}
	args, level := InitArgs(cfg.Args), effectiveLogLevel(cfg.LogLevel)
	for _, s := range []string{args, level} {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("pal_init: %q contains a NUL byte", s)
		}
	}
	if err := check("pal_init", callInit(l.syms.init, l.version, args, level)); err != nil {
		return err
	}
	l.args, l.logLevel = args, level
	l.state = stateInitialized
	return nil
}

func (l *Library) requireInitialized(call string) error {
	switch l.state {
	case stateLoaded:
		return fmt.Errorf("%s: enclave runtime not initialized (call Init first)", call)
	case stateDestroyed:
		return fmt.Errorf("%s: enclave runtime already destroyed", call)
	}
	return nil
}

// Spawn starts p in the enclave: pal_create_process, then pal_exec in a
// goroutine (pal_exec blocks until the process exits); for v1, pal_exec
// alone in a goroutine. Spawn keeps its own duplicates of p's stdio files
// (nil ones become /dev/null), so the caller may close its copies once Spawn
// returns; like os/exec, it puts those files in blocking mode. p.Dir is not part of the PAL API and is ignored; v1 also has no
// environment, so p.Env is dropped for a v1 PAL (its programs see whatever
// the PAL gives them, usually the runelet's environment).
func (l *Library) Spawn(ctx context.Context, p enclave.Process) (enclave.Proc, error) {
	call := "pal_create_process"
	if l.version == 1 {
		call = "pal_exec"
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}
	argv := p.Args
	if len(argv) == 0 {
		argv = []string{p.Path}
	}
	if err := checkProcess(p.Path, argv, p.Env); err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.requireInitialized(call); err != nil {
		return nil, err
	}
	stdio, err := dupStdio(p.Stdin, p.Stdout, p.Stderr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}
	fds := [3]int{int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd())}
	env := p.Env
	if l.version == 1 {
		env = nil
	}
	mem := newLaunch(p.Path, argv, env)
	proc := &process{lib: l, done: make(chan struct{})}
	finish := func(code int, err error) {
		mem.free()
		closeAll(stdio)
		proc.code, proc.err = code, err
		close(proc.done)
	}

	if l.version == 1 {
		go func() {
			ret, code := callExecV1(l.syms.exec, mem, fds)
			if err := check("pal_exec", ret); err != nil {
				finish(-1, err)
				return
			}
			finish(code, nil)
		}()
		return proc, nil
	}

	ret, pid := callCreateProcess(l.syms.createProcess, mem, fds)
	if err := check("pal_create_process", ret); err != nil {
		mem.free()
		closeAll(stdio)
		return nil, err
	}
	proc.pid = pid
	go func() {
		ret, code := callExec(l.syms.exec, mem, pid)
		if err := check("pal_exec", ret); err != nil {
			finish(-1, err)
			return
		}
		finish(code, nil)
	}()
	return proc, nil
}

// checkProcess refuses what a C string array cannot carry.
func checkProcess(path string, argv, env []string) error {
	if path == "" {
		return errors.New("empty program path")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return fmt.Errorf("program path %q contains a NUL byte", path)
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argv[%d] %q contains a NUL byte", i, a)
		}
	}
	for i, e := range env {
		if strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("env[%d] %q contains a NUL byte", i, e)
		}
	}
	return nil
}

// dupStdio duplicates the three files (close-on-exec), opening /dev/null
// for nil ones.
func dupStdio(files ...*os.File) ([]*os.File, error) {
	out := make([]*os.File, 0, len(files))
	for i, f := range files {
		var d *os.File
		if f == nil {
			var err error
			if d, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
				closeAll(out)
				return nil, fmt.Errorf("stdio %d: %w", i, err)
			}
		} else {
			fd, err := dupCloexec(f)
			if err != nil {
				closeAll(out)
				return nil, fmt.Errorf("stdio %d: duplicate %s: %w", i, f.Name(), err)
			}
			d = os.NewFile(uintptr(fd), f.Name())
		}
		out = append(out, d)
	}
	return out, nil
}

// dupCloexec duplicates f's descriptor. f.Fd() first puts f in blocking
// mode, as os/exec does for a child's stdio: the program shares the open
// file description, and a program handed a non-blocking pipe (Go makes them
// non-blocking for its poller) would see EAGAIN as a read error.
func dupCloexec(f *os.File) (int, error) {
	fd := f.Fd()
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
	runtime.KeepAlive(f)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Destroy calls pal_destroy. It is valid once, after a successful Init.
// The library stays mapped: a PAL may leave threads behind, and unmapping
// their code would crash the process.
func (l *Library) Destroy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.requireInitialized("pal_destroy"); err != nil {
		return err
	}
	l.state = stateDestroyed
	return check("pal_destroy", callDestroy(l.syms.destroy))
}

// Report calls pal_get_local_report (PAL API v3) with targetInfo, an SGX
// TARGETINFO (TargetInfoSize bytes), and returns the report the PAL wrote.
func (l *Library) Report(targetInfo []byte) ([]byte, error) {
	if l.version < 3 {
		return nil, fmt.Errorf("pal_get_local_report: %w: the PAL implements PAL API v%d; local reports need v3", errors.ErrUnsupported, l.version)
	}
	l.mu.Lock()
	err := l.requireInitialized("pal_get_local_report")
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ret, report, err := callGetLocalReport(l.syms.getLocalReport, targetInfo)
	if err != nil {
		return nil, err
	}
	if err := check("pal_get_local_report", ret); err != nil {
		return nil, err
	}
	return report, nil
}

// process is one program started through the PAL.
type process struct {
	lib  *Library
	pid  int // the PAL's process id; 0 for v1, which has none
	done chan struct{}
	code int
	err  error
}

// Wait returns the exit status pal_exec reported (exit code, or 128+signal
// as the PAL reports it), or the PAL's error with -1.
func (p *process) Wait() (int, error) {
	<-p.done
	return p.code, p.err
}

// Signal calls pal_kill(pid, sig). PAL API v1 has no pal_kill: the error
// then wraps errors.ErrUnsupported.
func (p *process) Signal(sig syscall.Signal) error {
	if p.lib.version == 1 {
		return fmt.Errorf("pal_kill: %w: PAL API v1 defines no pal_kill", errors.ErrUnsupported)
	}
	select {
	case <-p.done:
		return fmt.Errorf("pal_kill: %w", os.ErrProcessDone)
	default:
	}
	p.lib.mu.Lock()
	err := p.lib.requireInitialized("pal_kill")
	p.lib.mu.Unlock()
	if err != nil {
		return err
	}
	return check("pal_kill", callKill(p.lib.syms.kill, p.pid, int(sig)))
}

// PID is the process id the PAL assigned (0 under PAL API v1).
func (p *process) PID() int { return p.pid }
