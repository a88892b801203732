package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

// TrapExitStatus is the exit status of a guest stopped by a trap (unreachable, out-of-bounds
// memory access, stack exhaustion, …), as 128+SIGABRT is for a native program that aborts and as
// wasmtime reports a trap. builtin:wasm never delivers SIGABRT itself, so a trap is not mistaken
// for a signal it forwarded.
const TrapExitStatus = 128 + int(syscall.SIGABRT)

// maxExitStatus is the largest status a process can report; proc_exit codes above it are
// reported as it, so that a failure never wraps around to success.
const maxExitStatus = 255

// Spawn implements enclave.Runtime: it instantiates a fresh module instance of p.Path and runs its
// _start. Errors before the guest runs (missing file, invalid module, bad working directory,
// bad environment, failed instantiation) are returned here; what the guest does is the Wait status.
func (r *Runtime) Spawn(ctx context.Context, p enclave.Process) (enclave.Proc, error) {
	l, err := r.prepare(p, true)
	if err != nil {
		return nil, err
	}
	dir := l.Dir
	if dir == "" {
		dir = "/"
	}
	st, errno := r.rootfs.Stat(dir)
	if errno != 0 {
		return nil, fmt.Errorf("builtin:wasm: working directory %s: %w", dir, errno)
	}
	if !st.Mode.IsDir() {
		return nil, fmt.Errorf("builtin:wasm: working directory %s: not a directory", dir)
	}
	code, private := l.module, false
	sum, err := r.checkMeasured(l.modulePath, code)
	if err != nil {
		return nil, err
	}
	if sealed.IsSealed(code) {
		// Run as opened, compiled only in memory: a compilation cache would keep native code
		// of the plaintext on the host.
		if code, err = r.unseal(ctx, code); err != nil {
			return nil, fmt.Errorf("builtin:wasm: sealed module %s: %w", l.modulePath, err)
		}
		private, sum = true, sha256.Sum256(code)
	}
	eng, cm, err := r.compileSum(ctx, code, sum, private)
	if err != nil {
		return nil, fmt.Errorf("builtin:wasm: %s: %w", l.modulePath, err)
	}

	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	proc := &process{
		runtime: r,
		path:    l.modulePath,
		ctx:     pctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	if p.Stderr != nil {
		proc.stderr = p.Stderr
	}
	mcfg := wazero.NewModuleConfig().
		WithName("").         // anonymous: many instances of one module may run at once
		WithStartFunctions(). // _start is called by run, once the instance can be signalled
		WithArgs(l.Args...).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(proc.sleep).
		WithRandSource(rand.Reader).
		WithFSConfig(wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(r.rootfs, "/"))
	hasPWD := false
	for _, kv := range GuestEnv(l.Env) {
		k, v, _ := strings.Cut(kv, "=")
		hasPWD = hasPWD || k == "PWD"
		mcfg = mcfg.WithEnv(k, v)
	}
	if p.Dir != "" && !hasPWD {
		// WASI preview 1 has no working directory; Go's wasip1 port starts in $PWD (wasi-libc
		// programs start at "/" whatever is set).
		mcfg = mcfg.WithEnv("PWD", p.Dir)
	}
	if p.Stdin != nil {
		mcfg = mcfg.WithStdin(&cancelableReader{r: p.Stdin, done: pctx.Done()})
	}
	if p.Stdout != nil {
		mcfg = mcfg.WithStdout(p.Stdout)
	}
	if p.Stderr != nil {
		mcfg = mcfg.WithStderr(p.Stderr)
	}

	r.mu.Lock()
	if r.destroyed {
		r.mu.Unlock()
		cancel()
		return nil, errors.New("builtin:wasm: runtime destroyed")
	}
	r.procs[proc] = struct{}{}
	r.mu.Unlock()

	instantiated := make(chan error, 1)
	go proc.run(eng, cm, mcfg, instantiated)
	select {
	case err := <-instantiated:
		if err != nil {
			<-proc.done
			return nil, fmt.Errorf("builtin:wasm: instantiate %s: %w", l.modulePath, err)
		}
	case <-ctx.Done():
		proc.terminate(syscall.SIGKILL)
		<-proc.done
		return nil, fmt.Errorf("builtin:wasm: instantiate %s: %w", l.modulePath, ctx.Err())
	}
	return proc, nil
}

// process is one running module instance.
type process struct {
	runtime *Runtime
	path    string
	stderr  io.Writer
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	sig      syscall.Signal // the first terminating signal delivered while running, 0 if none
	finished bool           // _start has returned: later signals change nothing
	status   int
}

func (p *process) run(e *engine, cm wazero.CompiledModule, cfg wazero.ModuleConfig, instantiated chan<- error) {
	defer func() {
		p.cancel()
		p.runtime.mu.Lock()
		delete(p.runtime.procs, p)
		p.runtime.mu.Unlock()
		close(p.done)
	}()
	mod, err := e.rt.InstantiateModule(p.ctx, cm, cfg)
	if err != nil {
		instantiated <- err
		return
	}
	defer mod.Close(context.Background())
	instantiated <- nil
	// Signalled already? The context is cancelled and _start stops at its first check.
	_, err = mod.ExportedFunction("_start").Call(p.ctx)
	p.mu.Lock()
	p.finished = true
	sig := p.sig
	p.mu.Unlock()
	p.status = p.exitStatus(err, sig)
}

// exitStatus maps how _start ended to a process exit status. A process signalled while it ran
// reports the signal however its code then stopped, as a killed native process does.
func (p *process) exitStatus(err error, sig syscall.Signal) int {
	if sig != 0 {
		return 128 + int(sig)
	}
	if err == nil {
		return 0
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		code := exit.ExitCode()
		switch {
		case code == sys.ExitCodeContextCanceled || code == sys.ExitCodeDeadlineExceeded:
			// Only a signal cancels the instance's context; anything else is a runtime fault.
			p.report(err)
			return TrapExitStatus
		case code > maxExitStatus:
			return maxExitStatus
		default:
			return int(code)
		}
	}
	p.report(err)
	return TrapExitStatus
}

// report writes why the guest was stopped to its stderr, as a crashing program's runtime would.
func (p *process) report(err error) {
	if p.stderr != nil {
		fmt.Fprintf(p.stderr, "builtin:wasm: %s: trap: %v\n", p.path, err)
	}
}

// Wait implements enclave.Proc.
func (p *process) Wait() (int, error) {
	<-p.done
	return p.status, nil
}

// Signal implements enclave.Proc. WASI preview 1 cannot deliver signals to a guest, so a signal
// does what its default action would: one that terminates stops the instance with status
// 128+signal; one ignored by default (SIGCHLD, SIGCONT, SIGURG, SIGWINCH) does nothing; a stop
// signal is refused. Signal 0 only checks that the process still runs.
func (p *process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("signal %d: %w", int(sig), os.ErrProcessDone)
	default:
	}
	switch sig {
	case 0, syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH:
		return nil
	case syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return fmt.Errorf("builtin:wasm cannot stop a wasm process (signal %d): WASI has no job control", int(sig))
	}
	if sig < 0 || sig > 64 {
		return fmt.Errorf("signal %d: %w", int(sig), syscall.EINVAL)
	}
	p.terminate(sig)
	return nil
}

// terminate stops the instance by cancelling its context: with WithCloseOnContextDone the
// running code exits at its next function entry or loop back-edge, and any sleep or stdin read
// the guest is blocked in ends. It deliberately does not call the module's CloseWithExitCode from
// here: that closes the instance's open files while a host call on this goroutine may be using
// them (a data race, and a closed fd number can be reused by another open). Cancellation lets
// the running goroutine close them itself.
func (p *process) terminate(sig syscall.Signal) {
	p.mu.Lock()
	if p.sig == 0 && !p.finished {
		p.sig = sig
	}
	p.mu.Unlock()
	p.cancel()
}

// errTerminated, panicked from a host function, ends the guest at once: wazero returns a
// *sys.ExitError panicked by a host function as the call's result (proc_exit works this way).
func errTerminated() *sys.ExitError { return sys.NewExitError(sys.ExitCodeContextCanceled) }

// sleep is the guest's nanosleep (poll_oneoff on a clock). A signal ends the sleep and the
// guest with it, without running any more guest code.
func (p *process) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.ctx.Done():
		panic(errTerminated())
	}
}

// cancelableReader is the guest's stdin. A read blocked on the real stdin cannot be interrupted,
// so each read runs in a goroutine and a signal ends the guest's read, and the guest, at once
// (it does not see an EOF it could act on); the abandoned read's data is dropped, as it would be
// for a killed native process.
type cancelableReader struct {
	r        io.Reader
	done     <-chan struct{}
	inflight chan readResult
	leftover []byte
}

type readResult struct {
	data []byte
	err  error
}

func (c *cancelableReader) Read(p []byte) (int, error) {
	if len(c.leftover) > 0 {
		n := copy(p, c.leftover)
		c.leftover = c.leftover[n:]
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.inflight == nil {
		ch := make(chan readResult, 1)
		buf := make([]byte, len(p))
		go func(r io.Reader) {
			n, err := r.Read(buf)
			ch <- readResult{data: buf[:max(n, 0)], err: err}
		}(c.r)
		c.inflight = ch
	}
	select {
	case res := <-c.inflight:
		c.inflight = nil
		n := copy(p, res.data)
		c.leftover = res.data[n:]
		if len(c.leftover) > 0 {
			return n, nil
		}
		return n, res.err
	case <-c.done:
		panic(errTerminated())
	}
}
