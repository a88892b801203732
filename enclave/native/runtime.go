// Package native is the built-in "native" enclave runtime ("builtin:native"): it runs the
// container's unmodified Linux entrypoint as an ordinary child process of the init-runelet and
// measures it (the SHA-256 of the executable and its launch configuration, docs/measurement.md),
// so that the whole attestation flow can run on a machine without a TEE.
//
// It provides no isolation and no confidentiality: the workload is a plain process. It must
// never run with an ENCLAVE_TYPE other than "sim", where its measurement would be mistaken for
// hardware-backed evidence, and it must never read an executable outside the rootfs.
package native

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/internal/openat2"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

func init() {
	enclave.RegisterBuiltin("native", func() enclave.Runtime { return New() })
}

// Runtime is the builtin:native enclave runtime. Make one with New (or enclave.Builtin("native")).
type Runtime struct {
	mu          sync.Mutex
	initialized bool
	destroyed   bool
	rootfs      string
	rootFD      int
	procs       map[*process]struct{}
	resource    func(ctx context.Context, id string) ([]byte, error)
	// measured holds, per executable path, the code Measurement measured: a sealed executable
	// runs only if its code digest is still that one, and one measured sealed only if it is
	// still sealed, so that a file replaced after the measurement was attested never runs
	// under the attested identity.
	measured map[string]measuredCode
}

// SetResourceFunc sets how the runtime fetches the key of a sealed executable from the enclave's
// key broker (the runelet's, after attesting to it); nil: a sealed executable does not run.
func (r *Runtime) SetResourceFunc(f func(ctx context.Context, id string) ([]byte, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resource = f
}

// New returns an uninitialized builtin:native runtime.
func New() *Runtime {
	return &Runtime{rootFD: -1, procs: map[*process]struct{}{}}
}

// Init implements enclave.Runtime. It refuses every TEE type but "sim" and any runtime argument.
func (r *Runtime) Init(_ context.Context, cfg enclave.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.initialized {
		return errors.New("builtin:native: Init called twice")
	}
	if cfg.Type != "sim" {
		return fmt.Errorf("builtin:native provides no isolation; it is only available with ENCLAVE_TYPE=sim (got %q)", cfg.Type)
	}
	for _, arg := range cfg.Args {
		if strings.TrimSpace(arg) != "" {
			return fmt.Errorf("builtin:native takes no runtime arguments, got %q", arg)
		}
	}
	if cfg.Rootfs == "" {
		return errors.New("builtin:native: rootfs is empty")
	}
	fd, err := unix.Open(cfg.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("builtin:native: open rootfs %s: %w", cfg.Rootfs, err)
	}
	r.rootfs, r.rootFD, r.initialized = cfg.Rootfs, fd, true
	return nil
}

// openInRoot opens p (absolute, as the workload sees it) inside the rootfs the way the kernel
// resolves it for a chrooted process: symlinks and ".." never leave the rootfs.
func (r *Runtime) openInRoot(p string, flags int) (*os.File, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := openat2.Open(r.rootFD, p, how)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// launch is what Spawn and Measurement derive from a Process.
type launch struct {
	exePath string
	Launch
}

func (r *Runtime) prepare(p enclave.Process) (*launch, error) {
	r.mu.Lock()
	initialized, destroyed := r.initialized, r.destroyed
	r.mu.Unlock()
	if !initialized {
		return nil, errors.New("builtin:native: runtime not initialized")
	}
	if destroyed {
		return nil, errors.New("builtin:native: runtime destroyed")
	}
	res, err := p.Resolve()
	if err != nil {
		return nil, fmt.Errorf("builtin:native: %w", err)
	}
	l := &launch{exePath: res.Path, Launch: Launch{Args: res.Args, Env: p.Env, Dir: res.Dir, Secrets: p.Secrets, Layers: p.Layers}}
	resolved := p
	resolved.Path = res.Path
	l.CodeInLayer, _ = resolved.CodeInLayer()
	return l, nil
}

// measuredCode is what Measurement took of an executable: its code digest, and whether it was
// sealed.
type measuredCode struct {
	sum    [sha256.Size]byte
	sealed bool
}

// executableSum reads the regular file the process would execute and returns its code digest
// and whether it is sealed.
func (r *Runtime) executableSum(exePath string) ([sha256.Size]byte, bool, error) {
	var sum [sha256.Size]byte
	f, err := r.openInRoot(exePath, unix.O_RDONLY)
	if err != nil {
		return sum, false, fmt.Errorf("builtin:native: executable %s: %w", exePath, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return sum, false, fmt.Errorf("builtin:native: executable %s: %w", exePath, err)
	}
	if !info.Mode().IsRegular() {
		return sum, false, fmt.Errorf("builtin:native: executable %s: not a regular file", exePath)
	}
	// A file sealed with a wrapped content key is measured by the plaintext digest in its header
	// (sealed.CodeDigest), which the start of the file holds.
	head := make([]byte, sealed.HeadSize)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return sum, false, fmt.Errorf("builtin:native: read executable %s: %w", exePath, err)
	}
	if wrapped, ok := sealed.WrappedDigest(head[:n]); ok {
		return wrapped, true, nil
	}
	// Streamed: the measurement needs the digest only, and a whole executable read into the
	// heap (megabytes, page-faulted in and collected again) cost create more than the hash.
	h := sha256.New()
	h.Write(head[:n])
	if _, err := io.Copy(h, f); err != nil {
		return sum, false, fmt.Errorf("builtin:native: read executable %s: %w", exePath, err)
	}
	h.Sum(sum[:0])
	return sum, sealed.IsSealed(head[:n]), nil
}

// Measurement implements enclave.Runtime: Measure over the executable at p.Path in the rootfs
// and the launch configuration Spawn uses.
func (r *Runtime) Measurement(p enclave.Process) (string, error) {
	l, err := r.prepare(p)
	if err != nil {
		return "", err
	}
	if l.CodeInLayer != "" {
		return Measure(nil, l.Launch), nil
	}
	sum, isSealed, err := r.executableSum(l.exePath)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	if r.measured == nil {
		r.measured = map[string]measuredCode{}
	}
	r.measured[l.exePath] = measuredCode{sum: sum, sealed: isSealed}
	r.mu.Unlock()
	return measureSum(sum, l.Launch), nil
}

// Spawn implements enclave.Runtime: it starts p as a child process, chrooted into the rootfs
// unless the rootfs is already "/". The child stays in the runelet's process group so that, with
// a terminal, it is the foreground job and may read from it; signals reach it through Signal.
func (r *Runtime) Spawn(ctx context.Context, p enclave.Process) (enclave.Proc, error) {
	l, err := r.prepare(p)
	if err != nil {
		return nil, err
	}
	run, closeRun, err := r.runnable(ctx, l.exePath)
	if err != nil {
		return nil, err
	}
	defer closeRun()
	dir, err := r.openInRoot(l.Dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("builtin:native: working directory %s: %w", l.Dir, err)
	}
	dir.Close()

	env := l.Env
	if env == nil {
		env = []string{} // nil would make os.StartProcess pass the runelet's own environment
	}
	// os.StartProcess, not os/exec: exec.Cmd drops repeated environment keys, and the process
	// must get (and be measured with) its environment exactly as configured.
	stdio := []*os.File{p.Stdin, p.Stdout, p.Stderr}
	for i, f := range stdio {
		if f == nil {
			devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("builtin:native: %w", err)
			}
			defer devNull.Close()
			stdio[i] = devNull
		}
	}
	attr := &os.ProcAttr{Dir: l.Dir, Env: env, Files: stdio, Sys: &syscall.SysProcAttr{}}
	if r.rootfs != "/" {
		attr.Sys.Chroot = r.rootfs
	}
	if c := p.Credential; c != nil && (c.UID != uint32(os.Getuid()) || c.GID != uint32(os.Getgid())) {
		attr.Sys.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, NoSetGroups: c.UID == uint32(os.Getuid())}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.destroyed {
		return nil, errors.New("builtin:native: runtime destroyed")
	}
	osProc, err := os.StartProcess(run, l.Args, attr)
	if err != nil {
		return nil, fmt.Errorf("builtin:native: start %s: %w", l.exePath, err)
	}
	proc := &process{runtime: r, proc: osProc, done: make(chan struct{})}
	r.procs[proc] = struct{}{}
	go proc.wait()
	return proc, nil
}

// Exec runs p in place of the calling process, with the calling process's stdio (p's are not
// used), and returns only on failure. `rune exec` uses it so that the process keeps exactly the
// confinement libcontainer gave the exec'd runelet for the exec spec, as `runc exec` would; it
// needs the rootfs to be "/" (the runelet runs in the container) since it does not chroot.
func (r *Runtime) Exec(p enclave.Process) error {
	l, err := r.prepare(p)
	if err != nil {
		return err
	}
	if r.rootfs != "/" {
		return fmt.Errorf("builtin:native: exec in place needs the rootfs to be /, not %s", r.rootfs)
	}
	run, closeRun, err := r.runnable(context.Background(), l.exePath)
	if err != nil {
		return err
	}
	defer closeRun()
	if err := os.Chdir(l.Dir); err != nil {
		return fmt.Errorf("builtin:native: working directory %s: %w", l.Dir, err)
	}
	env := l.Env
	if env == nil {
		env = []string{}
	}
	err = unix.Exec(run, l.Args, env)
	return fmt.Errorf("builtin:native: exec %s: %w", l.exePath, err)
}

// Destroy implements enclave.Runtime: it kills the processes still running, waits for them and
// closes the rootfs.
func (r *Runtime) Destroy() error {
	r.mu.Lock()
	if r.destroyed || !r.initialized {
		r.destroyed = true
		r.mu.Unlock()
		return nil
	}
	r.destroyed = true
	procs := make([]*process, 0, len(r.procs))
	for p := range r.procs {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	for _, p := range procs {
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := unix.Close(r.rootFD)
	r.rootFD = -1
	return err
}

// process is one running child.
type process struct {
	runtime *Runtime
	proc    *os.Process
	done    chan struct{}
	status  int
	err     error
}

func (p *process) wait() {
	defer close(p.done)
	state, err := p.proc.Wait()
	p.runtime.mu.Lock()
	delete(p.runtime.procs, p)
	p.runtime.mu.Unlock()
	if err != nil {
		p.err = fmt.Errorf("builtin:native: wait: %w", err)
		return
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		p.err = fmt.Errorf("builtin:native: wait: unexpected status %v", state)
	case ws.Signaled():
		p.status = 128 + int(ws.Signal())
	default:
		p.status = ws.ExitStatus()
	}
}

// PID is the host-visible process id, so that PID 1 can tell its own children from orphans it reaps.
func (p *process) PID() int { return p.proc.Pid }

// Wait implements enclave.Proc: the exit status, 128+signal when a signal killed the process.
func (p *process) Wait() (int, error) {
	<-p.done
	return p.status, p.err
}

// Signal implements enclave.Proc: sig goes to the child process itself.
func (p *process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("signal %d: %w", int(sig), os.ErrProcessDone)
	default:
	}
	if err := p.proc.Signal(sig); err != nil {
		return fmt.Errorf("signal %d: %w", int(sig), err)
	}
	return nil
}
