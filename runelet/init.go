package runelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"golang.org/x/sys/unix"
)

// RuntimeOpener makes the enclave.Runtime for a config; cmd/init-runelet supplies one that knows the
// built-in runtimes and the PAL loader, so this package stays free of cgo.
type RuntimeOpener func(cfg *agent.Config) (enclave.Runtime, error)

// EvidenceSource produces evidence over 64 bytes of report data for this enclave.
type EvidenceSource func(ctx context.Context, reportData [attestation.ReportDataSize]byte) ([]byte, error)

// EvidenceOpener makes the EvidenceSource for a config (sim key, configfs-tsm, …).
type EvidenceOpener func(cfg *agent.Config) (EvidenceSource, error)

// ResourceHook is implemented by runtimes that let the workload fetch its key broker's resources
// itself (the wasm host import); the runelet connects it to the enclave's broker client.
type ResourceHook interface {
	SetResourceFunc(func(ctx context.Context, id string) ([]byte, error))
}

// Preloader is implemented by runtimes that can do the entrypoint's costly loading (validating
// and compiling a wasm module) before start: the runelet begins it as soon as the runtime is
// initialised, so it runs while create finishes and start is on its way, not after start asks.
type Preloader interface {
	Preload(ctx context.Context, p enclave.Process) error
	// PreloadChecks reports whether the host checked nothing of the entrypoint at create (the
	// wasm interpreter: prepare validates nothing), so that the preload is the check: it then
	// runs before the runtime reports ready, and its failure fails create.
	PreloadChecks() bool
}

// EvidenceHook is implemented by runtimes that let the workload ask for evidence itself (the wasm
// host import); the runelet connects it to the enclave's EvidenceSource.
type EvidenceHook interface {
	SetEvidenceFunc(func(ctx context.Context, reportData [64]byte) ([]byte, error))
}

type pid1 struct {
	cfg         *agent.Config
	rt          enclave.Runtime
	evidence    EvidenceSource
	measurement string
	initErr     error

	// reaper is set for runtimes whose every child is known (builtin:native); a PAL waits for the
	// children it forks itself, and an orphan reaper could take their status from it.
	reaper *reaper

	// broker is the key broker's client (secrets and resources), made on first use.
	broker broker
	// layers are the encrypted layers as measured at init (enclave.LayerMeasured): unpacking
	// checks each blob against them.
	layers []string

	mu      sync.Mutex
	started bool
	entry   enclave.Proc
	startC  chan struct{}
}

// Main runs PID 1 of an enclave container and returns its exit status.
func Main(open RuntimeOpener, openEvidence EvidenceOpener) int {
	cfg, err := agent.ReadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet:", err)
		return 1
	}
	// While the enclave runtime initialises, fd 2 is rune's crash pipe: a PAL that crashes the runelet
	// has its Go crash report read and explained by rune create instead of dumped on the user. The
	// workload's stderr is kept aside and is fd 2 again once initialisation succeeded.
	restoreStderr := func() {}
	if cfg.CrashFD > 0 {
		if saved, err := unix.Dup(2); err == nil {
			unix.CloseOnExec(saved)
			if unix.Dup2(cfg.CrashFD, 2) == nil {
				restoreStderr = func() {
					_ = unix.Dup2(saved, 2)
					unix.Close(saved)
				}
			}
		}
		unix.Close(cfg.CrashFD)
	}
	// Subscribe before anything can be signalled, so no signal for the workload is lost.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)

	p := &pid1{cfg: cfg, startC: make(chan struct{})}
	if cfg.Settings.Runtime() == enclave.NativeRuntime {
		p.reaper = newReaper()
	}
	hostLn, err := net.FileListener(os.NewFile(uintptr(cfg.HostListenFD), "runelet-host"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet: host socket:", err)
		return 1
	}
	// Connections accepted from now on report who sends each message: an exec request must come
	// from the exec'd runelet, whose confinement the enclave process must not exceed.
	if err := agent.PassCred(hostLn.(*net.UnixListener)); err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet: host socket:", err)
		return 1
	}
	p.initErr = p.initialise(open, openEvidence)
	restoreStderr()
	if p.initErr != nil {
		// rune create is waiting on the host socket: tell it why, then end.
		p.serveReadyError(hostLn.(*net.UnixListener))
		return 1
	}
	// Before serving anything: the umask it sets for a moment is the whole process's.
	ln, err := listenInContainer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet: agent socket:", err)
	}
	go p.serve(hostLn.(*net.UnixListener), true)
	if ln != nil {
		go p.serve(ln, false)
	}

	// Until start, a terminating signal ends the enclave; afterwards signals go to the workload.
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig == unix.SIGCHLD {
				p.reapOrphans()
				continue
			}
			if ignoredSignal(sig) {
				continue
			}
			if terminating(sig) {
				p.rt.Destroy()
				return 128 + int(sig)
			}
		case <-p.startC:
			// PID 1 lives as long as the container: what start-up allocated and dropped (the
			// configuration, the measured file, the agent's first messages) goes back to the
			// kernel now instead of staying in the heap for the container's whole life.
			go debug.FreeOSMemory()
			return p.runEntrypoint(sigs)
		}
	}
}

func (p *pid1) reapOrphans() {
	if p.reaper != nil {
		p.reaper.reap()
	}
}

// spawn starts proc in the enclave, registered with the reaper before any zombie of it can be seen.
func (p *pid1) spawn(proc enclave.Process) (enclave.Proc, error) {
	if p.reaper == nil {
		return p.rt.Spawn(context.Background(), proc)
	}
	p.reaper.mu.Lock()
	defer p.reaper.mu.Unlock()
	running, err := p.rt.Spawn(context.Background(), proc)
	if err == nil {
		p.reaper.spawnedLocked(running)
	}
	return running, err
}

func (p *pid1) runEntrypoint(sigs chan os.Signal) int {
	done := make(chan int, 1)
	go func() {
		code, err := p.entry.Wait()
		if err != nil {
			fmt.Fprintln(os.Stderr, "init-runelet:", err)
		}
		done <- code
	}()
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig == unix.SIGCHLD {
				p.reapOrphans()
				continue
			}
			if ignoredSignal(sig) {
				continue
			}
			if err := p.entry.Signal(sig); err != nil {
				fmt.Fprintf(os.Stderr, "init-runelet: forward %v: %v\n", sig, err)
			}
		case code := <-done:
			if err := p.rt.Destroy(); err != nil {
				fmt.Fprintln(os.Stderr, "init-runelet: destroy:", err)
			}
			return code
		}
	}
}

// ignoredSignal filters what is the runelet's own business, not the workload's.
func ignoredSignal(s syscall.Signal) bool {
	return s == unix.SIGCHLD || s == unix.SIGURG || s == unix.SIGPIPE || s == unix.SIGWINCH
}

func terminating(s syscall.Signal) bool {
	return s == unix.SIGTERM || s == unix.SIGINT || s == unix.SIGHUP || s == unix.SIGQUIT
}

func (p *pid1) initialise(open RuntimeOpener, openEvidence EvidenceOpener) error {
	rt, err := open(p.cfg)
	if err != nil {
		return err
	}
	s := p.cfg.Settings
	ecfg := enclave.Config{
		Type: s.Type, RuntimePath: p.cfg.Runtime().String(), Args: s.Args, LogLevel: s.LogLevel,
		Rootfs: "/", CacheDir: p.cfg.CacheDir,
	}
	if err := rt.Init(context.Background(), ecfg); err != nil {
		return err
	}
	p.rt = rt
	if k := p.cfg.Settings.KBS; k != nil && len(k.Layers) > 0 {
		if p.layers, err = measureLayers(k.Layers); err != nil {
			rt.Destroy()
			return err
		}
	}
	entry, err := p.entrypoint()
	if err != nil {
		rt.Destroy()
		return err
	}
	if pl, ok := rt.(Preloader); ok {
		if pl.PreloadChecks() {
			if err := pl.Preload(context.Background(), entry); err != nil {
				rt.Destroy()
				return err
			}
		} else {
			// Beside the measurement and while create finishes; whatever it fails on, Spawn
			// meets again at start and reports. Nothing of the module runs before start.
			go pl.Preload(context.Background(), entry)
		}
	}
	m, err := rt.Measurement(entry)
	if err != nil {
		rt.Destroy()
		return fmt.Errorf("measure %s: %w", entry.Path, err)
	}
	if p.cfg.Measurement != "" && m != p.cfg.Measurement {
		rt.Destroy()
		return enclave.WithKind(enclave.KindInvalid, fmt.Errorf("measurement mismatch: rune measured %s at create, the enclave runtime loaded %s (%s changed?)", p.cfg.Measurement, m, entry.Path))
	}
	p.measurement = m
	if openEvidence != nil {
		ev, err := openEvidence(p.cfg)
		if err != nil {
			rt.Destroy()
			return err
		}
		p.evidence = ev
		if h, ok := rt.(EvidenceHook); ok && ev != nil {
			h.SetEvidenceFunc(func(ctx context.Context, rd [64]byte) ([]byte, error) { return ev(ctx, rd) })
		}
		if h, ok := rt.(ResourceHook); ok && p.cfg.Settings.KBS != nil {
			h.SetResourceFunc(p.resource)
		}
	}
	return nil
}

// entrypoint is the container's process, with the broker settings its measurement covers.
func (p *pid1) entrypoint() (enclave.Process, error) {
	e := p.cfg.Entrypoint
	var proc enclave.Process
	var err error
	if path, ok := entrypointInLayer(&p.cfg.Settings, e.Args); ok {
		proc = enclave.Process{Path: path, Args: e.Args, Env: e.Env, Dir: e.Cwd, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	} else {
		proc, err = p.process(e.Args, e.Env, e.Cwd)
	}
	proc.Secrets = p.cfg.Settings.KBS.Measured()
	proc.Layers = p.layers
	return proc, err
}

// entrypointInLayer is Settings.InLayer for args[0].
func entrypointInLayer(s *enclave.Settings, args []string) (string, bool) {
	if len(args) == 0 {
		return "", false
	}
	return s.InLayer(args[0])
}

// process resolves args[0] as exec(3p) would, in the container's file system.
func (p *pid1) process(args, env []string, cwd string) (enclave.Process, error) {
	return newProcess(args, env, cwd)
}

// newProcess is args with this process's stdio, args[0] resolved as exec(3p) would.
func newProcess(args, env []string, cwd string) (enclave.Process, error) {
	if len(args) == 0 {
		return enclave.Process{}, errors.New("no program to run: args are empty")
	}
	path, err := lookPath(args[0], env, cwd)
	if err != nil {
		return enclave.Process{}, err
	}
	return enclave.Process{Path: path, Args: args, Env: env, Dir: cwd, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, nil
}

func lookPath(name string, env []string, cwd string) (string, error) {
	return agent.LookPath(name, env, cwd, func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular()
	})
}

// listenInContainer creates the agent socket through which any user of the container may ask for
// evidence. It is created with mode 0666 through the umask rather than chmod, which a seccomp
// profile may forbid; failing here costs the workload its evidence, not the container.
func listenInContainer() (*net.UnixListener, error) {
	os.Remove(agent.ContainerSocket)
	old := unix.Umask(0o111)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: agent.ContainerSocket, Net: "unix"})
	unix.Umask(old)
	return ln, err
}

func (p *pid1) serveReadyError(ln *net.UnixListener) {
	c, err := ln.AcceptUnix()
	if err != nil {
		return
	}
	defer c.Close()
	cc := agent.NewConn(c)
	var req agent.Request
	files, err := cc.Recv(&req)
	agent.CloseFiles(files)
	if err != nil {
		return
	}
	_ = cc.Send(agent.ErrorResponse(p.initErr))
}

func (p *pid1) serve(ln *net.UnixListener, host bool) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if host {
			// Inherited from the listener already; set again so no kernel's inheritance rules matter.
			_ = agent.PassCred(c)
		}
		go p.handle(agent.NewConn(c), host)
	}
}

func (p *pid1) handle(c *agent.Conn, host bool) {
	defer c.Close()
	var req agent.Request
	files, err := c.Recv(&req)
	if err != nil {
		return
	}
	defer agent.CloseFiles(files)
	// The container's socket serves the workload's own evidence and resources: anyone in the
	// container may connect to it.
	allowed := map[string]bool{agent.OpEvidence: true, agent.OpResource: true}
	if host {
		allowed = map[string]bool{agent.OpReady: true, agent.OpStart: true, agent.OpExec: true, agent.OpAttest: true, agent.OpEvidence: true}
	}
	if !allowed[req.Op] {
		_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, fmt.Errorf("operation %q is not served on this socket", req.Op))))
		return
	}
	switch req.Op {
	case agent.OpReady:
		_ = c.Send(p.info())
	case agent.OpStart:
		resp := p.start()
		// Answer before PID 1 starts waiting for the workload: a workload that ends at once would
		// otherwise end PID 1 before rune start hears that it started.
		_ = c.Send(resp)
		if resp.Started {
			close(p.startC)
		}
	case agent.OpExec:
		p.exec(c, &req, files)
	case agent.OpAttest:
		if len(req.Nonce) > attestation.ReportDataSize {
			_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, fmt.Errorf("nonce of %d bytes: at most %d", len(req.Nonce), attestation.ReportDataSize))))
			return
		}
		var rd [attestation.ReportDataSize]byte
		copy(rd[:], req.Nonce)
		_ = c.Send(p.evidenceResponse(rd))
	case agent.OpEvidence:
		if len(req.ReportData) != attestation.ReportDataSize {
			_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, fmt.Errorf("report data must be exactly %d bytes, got %d", attestation.ReportDataSize, len(req.ReportData)))))
			return
		}
		var rd [attestation.ReportDataSize]byte
		copy(rd[:], req.ReportData)
		_ = c.Send(p.evidenceResponse(rd))
	case agent.OpResource:
		if err := kbs.CheckResourcePath(req.Resource); err != nil {
			_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, err)))
			return
		}
		_ = c.Send(p.resourceResponse(req.Resource))
	}
}

func (p *pid1) info() *agent.Response {
	return &agent.Response{TEE: p.cfg.Settings.Type, Runtime: p.cfg.Settings.RuntimePath, Measurement: p.measurement}
}

func (p *pid1) start() *agent.Response {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, errors.New("the enclave's entrypoint was already started")))
	}
	proc, err := p.entrypoint()
	if err != nil {
		return agent.ErrorResponse(err)
	}
	// The workload's secrets and encrypted layers are in place before it runs, or it does not run.
	if err := p.placeSecrets(); err != nil {
		return agent.ErrorResponse(err)
	}
	if err := p.unpackLayers(); err != nil {
		return agent.ErrorResponse(err)
	}
	entry, err := p.spawn(proc)
	if err != nil {
		return agent.ErrorResponse(fmt.Errorf("start %s in the enclave: %w", proc.Path, err))
	}
	p.started, p.entry = true, entry
	r := p.info()
	r.Started = true
	return r
}

func (p *pid1) evidenceResponse(rd [attestation.ReportDataSize]byte) *agent.Response {
	r := p.info()
	if p.evidence == nil {
		r.SetError(enclave.WithKind(enclave.KindHardwareAbsent, fmt.Errorf("no attester for enclave type %q on this host", p.cfg.Settings.Type)))
		return r
	}
	ev, err := p.evidence(context.Background(), rd)
	if err != nil {
		r.SetError(fmt.Errorf("evidence: %w", err))
		return r
	}
	r.Evidence, r.ReportData = ev, rd[:]
	return r
}

// exec runs a process in a PAL's enclave for an exec'd runelet. The PAL runs it inside PID 1's
// enclave, so with PID 1's confinement whatever the exec asked for: the request is refused unless
// the process that sent it (the exec'd runelet, which libcontainer confined exactly as the exec
// spec says) has exactly PID 1's confinement. Built-in runtimes never come here: their exec'd
// runelet runs the process itself.
func (p *pid1) exec(c *agent.Conn, req *agent.Request, files []*os.File) {
	if r := p.cfg.Settings.Runtime(); !r.IsPAL() {
		_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, fmt.Errorf("%s runs exec'd processes in the exec'd runelet, not in PID 1", r))))
		return
	}
	if len(files) != 3 {
		_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, fmt.Errorf("exec needs the caller's stdin, stdout and stderr, got %d descriptors", len(files)))))
		return
	}
	if err := p.checkCaller(c.Sender()); err != nil {
		_ = c.Send(agent.ErrorResponse(enclave.WithKind(enclave.KindInvalid, err)))
		return
	}
	proc, err := p.process(req.Args, req.Env, req.Cwd)
	if err != nil {
		_ = c.Send(agent.ErrorResponse(err))
		return
	}
	proc.Stdin, proc.Stdout, proc.Stderr = files[0], files[1], files[2]
	running, err := p.spawn(proc)
	if err != nil {
		_ = c.Send(agent.ErrorResponse(fmt.Errorf("exec %s in the enclave: %w", proc.Path, err)))
		return
	}
	if err := c.Send(&agent.Response{Started: true}); err != nil {
		_ = running.Signal(unix.SIGKILL)
	}
	go func() {
		for {
			var sreq agent.Request
			fs, err := c.Recv(&sreq)
			agent.CloseFiles(fs)
			if err != nil {
				// The exec'd runelet went away: its process must not outlive it.
				if !errors.Is(err, net.ErrClosed) {
					_ = running.Signal(unix.SIGKILL)
				}
				return
			}
			if sreq.Op == agent.OpSignal && sreq.Signal > 0 && sreq.Signal < 65 {
				_ = running.Signal(syscall.Signal(sreq.Signal))
			}
		}
	}()
	code, err := running.Wait()
	if p.reaper != nil {
		p.reaper.forget(running)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet: exec:", err)
	}
	_ = c.Send(&agent.Response{ExitCode: &code})
}

// checkCaller refuses an exec whose sender is not a process of this container or whose
// confinement is not exactly PID 1's, which the PAL's process will have.
func (p *pid1) checkCaller(cred *unix.Ucred) error {
	if cred == nil || cred.Pid <= 0 {
		// Pid 0: the sender is outside the container's pid namespace (rune itself, on the host).
		return errors.New("exec must be asked by the exec'd runelet inside the container, over the connection rune opened for it")
	}
	self, err := readConfinement("self")
	if err != nil {
		return fmt.Errorf("read the enclave's confinement: %w", err)
	}
	caller, err := readConfinement(strconv.Itoa(int(cred.Pid)))
	if err != nil {
		return fmt.Errorf("read the exec's confinement: %w", err)
	}
	if d := self.differences(caller); len(d) > 0 {
		return fmt.Errorf("the enclave runtime %s runs exec'd processes with the enclave's own confinement (that of PID 1), "+
			"and this exec asks for another: %s; exec with the container's own user, groups, capabilities, no_new_privs and cgroup",
			p.cfg.Settings.RuntimePath, strings.Join(d, "; "))
	}
	return nil
}
