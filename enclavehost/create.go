package enclavehost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/pal/palcrash"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// CreateOptions are what Create needs besides the spec.
type CreateOptions struct {
	// Root is rune's state root; the container's state directory is Root/ID.
	Root, ID string
	// Bundle is the bundle directory (absolute): the rootfs and the manifest are found from it.
	Bundle string
	// Manifest is how the bundle's enclave manifest is treated.
	Manifest ManifestPolicy
}

// Launch is an enclave container between its spec rewrite (Create) and its runelet reporting
// ready (AwaitReady): the launcher starts PID 1 with the files PID1Files gives it.
type Launch struct {
	root, id string
	injected *Injected
	ln       *net.UnixListener
	crash    *os.File // read end of PID 1's crash report
	// initTimeout bounds the enclave runtime's initialisation (RUNE_ENCLAVE_INIT_TIMEOUT).
	initTimeout time.Duration
	// began and prepared time create's enclave phases for the debug log ("enclave ready"), the
	// first place to look when an enclave container starts slowly (bench/enclave/README.md).
	began, prepared time.Time
}

// Create validates the enclave settings of spec and rewrites spec to run the runelet as PID 1. It
// returns nil for an ordinary container. In order: the settings (from the spec, removed from the
// workload's environment), the bundle's manifest (verified), the host's TEE, the PAL (the one
// PAL check, ResolvePAL), the entrypoint (resolved in the rootfs), prepare (measured, compiled,
// endorsed by `init-runelet prepare`), the manifest matched against the measurement, and only then
// the injection: nothing is created on the host before the settings are known good.
func Create(ctx context.Context, spec *specs.Spec, o CreateOptions) (*Launch, error) {
	began := time.Now()
	s, err := enclave.FromSpec(spec)
	if err != nil {
		return nil, err
	}
	m, err := o.Manifest.Verify(o.Bundle, spec, s)
	if err != nil || s == nil {
		return nil, err
	}
	if err := s.CheckHost(); err != nil {
		return nil, err
	}
	palDirs, err := allowedPALDirs(s)
	if err != nil {
		return nil, err
	}
	palPath, err := ResolvePAL(s, palDirs)
	if err != nil {
		return nil, err
	}
	bin, err := FindRunelet()
	if err != nil {
		return nil, err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(o.Bundle, rootfs)
	}
	launch := agent.Launch{Args: spec.Process.Args, Env: spec.Process.Env, Cwd: spec.Process.Cwd}
	if len(launch.Args) == 0 {
		return nil, errors.New("args must not be empty")
	}
	// Bounded before the host does any work on them (and before they would fail to reach PID 1).
	if err := agent.CheckLaunchSize(launch); err != nil {
		return nil, enclave.WithKind(enclave.KindLimit, err)
	}
	initTimeout, err := agent.InitTimeoutFromEnv()
	if err != nil {
		return nil, err
	}
	path, inLayer := s.InLayer(launch.Args[0])
	if !inLayer {
		if path, err = LookPathInRootfs(rootfs, launch.Args[0], launch.Env, launch.Cwd); err != nil {
			return nil, err
		}
	}
	cacheDir := ""
	if s.Runtime() == enclave.WasmRuntime {
		cacheDir = WasmCacheDir()
	}
	// The runtimes' code runs in the runelet binary, so that rune starts as quickly as runc.
	host, err := Prepare(ctx, bin, &agent.PrepareRequest{
		Settings: *s, Rootfs: rootfs, Path: path, Launch: launch, CacheDir: cacheDir,
		SimPlatformKey: os.Getenv("RUNE_SIM_PLATFORM_KEY"),
	})
	if err != nil {
		return nil, err
	}
	prepared := time.Now()
	if err := MatchManifest(o.Bundle, m, s, host.Measurement, enclavemanifest.Entrypoint{Path: path, Args: launch.Args, Env: launch.Env, Cwd: launch.Cwd}); err != nil {
		return nil, err
	}
	// Only this module's entry of the cache is mounted: no other module's code or digest.
	inj, err := Inject(spec, s, InjectOptions{Runelet: bin, PAL: palPath, CacheDir: host.CacheEntry, PALDirs: palDirs})
	if err != nil {
		return nil, err
	}
	inj.Config.ID = o.ID
	inj.Config.Measurement = host.Measurement
	inj.Config.EnclaveKey = host.EnclaveKey
	return &Launch{root: o.Root, id: o.ID, injected: inj, initTimeout: initTimeout, began: began, prepared: prepared}, nil
}

// allowedPALDirs returns [enclave] pal_dirs of the node's configuration ($RUNE_CONFIG, else
// /etc/inclavare-containers/config.toml). The file is read only for a container that names a PAL
// library, so that no other container pays for it.
func allowedPALDirs(s *enclave.Settings) ([]string, error) {
	if !s.Runtime().IsPAL() {
		return nil, nil
	}
	e, _, err := config.LoadEnclave(os.Getenv)
	if err != nil {
		return nil, err
	}
	return e.PALDirs, nil
}

// WasmCacheDir is the root of the host's compiled-module cache (package enclave/wasm/codecache):
// $RUNE_CACHE_DIR/wasm, else /var/cache/rune/wasm.
func WasmCacheDir() string {
	if d := os.Getenv("RUNE_CACHE_DIR"); d != "" {
		return filepath.Join(d, "wasm")
	}
	return "/var/cache/rune/wasm"
}

// PID1Files are the descriptors PID 1 must inherit, numbered from firstFD on (after the
// launcher's own), and the environment entry that tells PID 1 where its Config is: its host
// socket's listener, the write end of its crash pipe and its Config.
func (l *Launch) PID1Files(firstFD int) ([]*os.File, string, error) {
	sock := Socket(l.root, l.id)
	// PID 1 keeps serving on this path after rune closes its copy of the listener.
	ln, err := agent.Listen(sock)
	if err != nil {
		return nil, "", fmt.Errorf("runelet socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, "", err
	}
	lnFile, err := ln.File()
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	l.ln = ln
	crashR, crashW, err := os.Pipe()
	if err != nil {
		lnFile.Close()
		return nil, "", err
	}
	l.crash = crashR
	cfg := l.injected.Config
	cfg.HostListenFD = firstFD
	cfg.CrashFD = cfg.HostListenFD + 1
	cfgFile, err := agent.ConfigFile(&cfg)
	if err != nil {
		lnFile.Close()
		crashW.Close()
		return nil, "", err
	}
	return []*os.File{lnFile, crashW, cfgFile}, agent.EnvConfigFD + "=" + strconv.Itoa(cfg.HostListenFD+2), nil
}

// Init is PID 1 as the launcher started it (libcontainer's *Process is one).
type Init interface {
	Pid() (int, error)
	Signal(os.Signal) error
}

// maxCrashOutput is how much of PID 1's initialisation output rune keeps.
const maxCrashOutput = 1 << 20

// crashReader drains PID 1's crash pipe while it initialises: the pipe also carries the enclave
// runtime's own output (a PAL's log during pal_init) and PID 1's phase lines, and a full pipe
// would stall PID 1. It keeps the first maxCrashOutput bytes.
type crashReader struct {
	f    *os.File
	done chan struct{}
	out  []byte
}

func readCrashPipe(f *os.File) *crashReader {
	c := &crashReader{f: f, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.out, _ = io.ReadAll(io.LimitReader(f, maxCrashOutput))
		_, _ = io.Copy(io.Discard, f)
	}()
	return c
}

// output returns what PID 1 wrote. Once PID 1 is gone the pipe ends at once; a child it left
// holding the pipe is waited for at most a second.
func (c *crashReader) output() []byte {
	_ = c.f.SetReadDeadline(time.Now().Add(time.Second))
	<-c.done
	return c.out
}

// AwaitReady waits, once PID 1 runs and the launcher closed its copies of pidFiles (the files
// PID1Files gave), for the enclave to be initialised, and records the container as created; with
// startNow (run in the foreground) it also starts the workload. An enclave runtime that does not
// initialise within the deadline has PID 1 killed; one that crashed is reported as a crash.
func (l *Launch) AwaitReady(ctx context.Context, p Init, pidFiles []*os.File, startNow bool) error {
	// Only PID 1 may hold the listener now, so a dead runelet refuses instead of hanging.
	for _, f := range pidFiles {
		f.Close()
	}
	l.ln.Close()
	defer l.crash.Close()
	started := time.Now()
	crash := readCrashPipe(l.crash)
	rtPath := l.injected.Config.Settings.RuntimePath
	readyCtx, cancel := context.WithTimeout(ctx, l.initTimeout)
	defer cancel()
	resp, err := agent.Ready(readyCtx, Socket(l.root, l.id))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// PID 1 is stuck (in a PAL call, say): it goes, and its pipe ends with it.
			_ = p.Signal(unix.SIGKILL)
			phase, _ := agent.InitOutput(crash.output())
			if phase == "" {
				phase = "init-runelet's start"
			}
			return enclave.TimeoutIn(phase, fmt.Errorf("enclave runtime %s: %s did not finish within %s (%s)", rtPath, phase, l.initTimeout, agent.EnvInitTimeout))
		}
		note := exitNote(p)
		out := crash.output()
		if c, ok := palcrash.Parse(out); ok {
			return enclave.WithKind(enclave.KindPAL, fmt.Errorf("%s: %w%s", rtPath, c, note))
		}
		// PID 1 ended without an answer: what it said last explains it better than the socket.
		var opErr *net.OpError
		if _, last := agent.InitOutput(out); last != "" && errors.As(err, &opErr) {
			return fmt.Errorf("enclave runtime %s: %s%s", rtPath, last, note)
		}
		return fmt.Errorf("enclave runtime %s: %w%s", rtPath, err, note)
	}
	st := &State{Settings: l.injected.Config.Settings, Measurement: resp.Measurement, Phase: PhaseCreated}
	logrus.WithFields(logrus.Fields{
		"id": l.id, "tee": st.Settings.Type, "runtime": st.Settings.RuntimePath, "measurement": st.Measurement,
		// Where create's time went: settings to prepare's answer (init-runelet prepare), the
		// container's start by libcontainer, PID 1's enclave initialisation until it answered.
		"prepare_ms": ms(l.prepared.Sub(l.began)), "container_start_ms": ms(started.Sub(l.prepared)), "enclave_init_ms": ms(time.Since(started)),
	}).Debug("enclave ready")
	if err := st.save(l.root, l.id); err != nil {
		return err
	}
	if !startNow {
		return nil
	}
	if err := markStarted(l.root, l.id); err != nil {
		return err
	}
	if resp, err := agent.Start(ctx, Socket(l.root, l.id)); err != nil {
		// PID 1 died while starting the workload (a PAL that crashed in pal_exec, say): its
		// exit status and its own report on stderr tell the rest, as for any workload.
		if resp != nil || !exited(p) {
			unmarkStarted(l.root, l.id)
			return err
		}
	}
	return nil
}

// exited reports whether PID 1 has ended, without reaping it (the launcher waits for it).
func exited(p Init) bool {
	pid, err := p.Pid()
	if err != nil {
		return false
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
			return false
		}
		if info.Signo != 0 { // filled in: pid has ended
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// exitNote describes how PID 1 ended, when it did, so a PAL crash is reported as one.
func exitNote(p Init) string {
	pid, err := p.Pid()
	if err != nil {
		return ""
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			return ""
		}
		if got == pid {
			if ws.Signaled() {
				return fmt.Sprintf(" (init-runelet killed by %s: the enclave runtime crashed)", unix.SignalName(ws.Signal()))
			}
			return fmt.Sprintf(" (init-runelet exited with status %d)", ws.ExitStatus())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// ms is d in milliseconds with a tenth's precision, for the debug log.
func ms(d time.Duration) float64 {
	return float64(d.Round(100*time.Microsecond)) / float64(time.Millisecond)
}
