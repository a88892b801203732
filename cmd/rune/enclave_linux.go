package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/manifest"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/runelet"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Phases of an enclave container as rune records them. libcontainer sees the runelet running from
// create on; "created" keeps runc's view until start runs the workload.
const (
	phaseCreated = "created"
	phaseRunning = "running"
)

// enclaveState is <root>/<id>/enclave.json.
type enclaveState struct {
	Settings    enclave.Settings `json:"settings"`
	Measurement string           `json:"measurement"`
	Phase       string           `json:"phase"`
}

func enclaveStatePath(root, id string) string { return filepath.Join(root, id, runelet.StateFile) }
func runeletSocket(root, id string) string    { return filepath.Join(root, id, runelet.HostSocket) }

// loadEnclaveState returns nil, nil for an ordinary container.
func loadEnclaveState(root, id string) (*enclaveState, error) {
	data, err := os.ReadFile(enclaveStatePath(root, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st enclaveState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("enclave state of %s: %w", id, err)
	}
	return &st, nil
}

func (st *enclaveState) save(root, id string) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := enclaveStatePath(root, id)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// enclaveStatus is libcontainer's status corrected for an enclave container that was created but
// not started: its runelet runs, but the workload does not.
func enclaveStatus(root string, c *libcontainer.Container, status libcontainer.Status) libcontainer.Status {
	if status != libcontainer.Running {
		return status
	}
	st, err := loadEnclaveState(root, c.ID())
	if err == nil && st != nil && !workloadStarted(root, c.ID(), st) {
		return libcontainer.Created
	}
	return status
}

// enclaveLaunch is an enclave container between its spec rewrite and its runelet reporting ready.
type enclaveLaunch struct {
	root, id string
	prep     *runelet.Prepared
	ln       *net.UnixListener
	crash    *os.File // read end of PID 1's crash report
	// initTimeout bounds the enclave runtime's initialisation (RUNE_ENCLAVE_INIT_TIMEOUT).
	initTimeout time.Duration
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

// prepareEnclave validates the enclave settings of spec and rewrites it to run the runelet. It returns
// nil for an ordinary container. Nothing is created on the host before the settings are known good.
func prepareEnclave(spec *specs.Spec, root, id, bundle string, mp manifestPolicy) (*enclaveLaunch, error) {
	s, err := enclave.FromSpec(spec)
	if err != nil {
		return nil, err
	}
	m, err := mp.verify(bundle, spec, s)
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
	if err := s.CheckRuntimePath(palDirs); err != nil {
		return nil, err
	}
	bin, err := runelet.FindRunelet()
	if err != nil {
		return nil, err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	launch := runelet.Launch{Args: spec.Process.Args, Env: spec.Process.Env, Cwd: spec.Process.Cwd}
	if len(launch.Args) == 0 {
		return nil, errors.New("args must not be empty")
	}
	// Bounded before the host does any work on them (and before they would fail to reach PID 1).
	if err := runelet.CheckLaunchSize(launch); err != nil {
		return nil, err
	}
	initTimeout, err := runelet.InitTimeoutFromEnv()
	if err != nil {
		return nil, err
	}
	path, inLayer := runelet.InLayer(s, launch.Args[0])
	if !inLayer {
		if path, err = runelet.LookPathInRootfs(rootfs, launch.Args[0], launch.Env, launch.Cwd); err != nil {
			return nil, err
		}
	}
	cacheDir := ""
	if name, _ := s.Builtin(); name == "wasm" {
		cacheDir = wasmCacheDir()
	}
	// The runtimes' code runs in the runelet binary, so that rune starts as quickly as runc.
	host, err := runelet.HostPrepare(bin, &runelet.PrepareRequest{
		Settings: *s, Rootfs: rootfs, Path: path, Launch: launch, CacheDir: cacheDir,
		SimPlatformKey: os.Getenv("RUNE_SIM_PLATFORM_KEY"),
	})
	if err != nil {
		return nil, err
	}
	if err := matchManifest(bundle, m, s, host.Measurement, manifest.Entrypoint{Path: path, Args: launch.Args, Env: launch.Env, Cwd: launch.Cwd}); err != nil {
		return nil, err
	}
	// Only this module's entry of the cache is mounted: no other module's code or digest.
	prep, err := runelet.Prepare(spec, s, runelet.PrepareOptions{Runelet: bin, CacheDir: host.CacheEntry, PALDirs: palDirs})
	if err != nil {
		return nil, err
	}
	prep.Config.ID = id
	prep.Config.Measurement = host.Measurement
	prep.Config.EnclaveKey = host.EnclaveKey
	return &enclaveLaunch{root: root, id: id, prep: prep, initTimeout: initTimeout}, nil
}

// wasmCacheDir is the root of the host's compiled-module cache (package enclave/wasm/codecache).
func wasmCacheDir() string {
	if d := os.Getenv("RUNE_CACHE_DIR"); d != "" {
		return filepath.Join(d, "wasm")
	}
	return "/var/cache/rune/wasm"
}

// beforeStart hands PID 1 its host socket and its config, after runc's descriptors.
func (e *enclaveLaunch) beforeStart(p *libcontainer.Process) error {
	sock := runeletSocket(e.root, e.id)
	// PID 1 keeps serving on this path after rune closes its copy of the listener.
	ln, err := runelet.Listen(sock)
	if err != nil {
		return fmt.Errorf("runelet socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	lnFile, err := ln.File()
	if err != nil {
		ln.Close()
		return err
	}
	e.ln = ln
	crashR, crashW, err := os.Pipe()
	if err != nil {
		lnFile.Close()
		return err
	}
	e.crash = crashR
	cfg := e.prep.Config
	cfg.HostListenFD = 3 + len(p.ExtraFiles)
	cfg.CrashFD = cfg.HostListenFD + 1
	cfgFile, err := runelet.ConfigFile(&cfg)
	if err != nil {
		lnFile.Close()
		crashW.Close()
		return err
	}
	p.ExtraFiles = append(p.ExtraFiles, lnFile, crashW, cfgFile)
	p.Env = append(p.Env, runelet.EnvConfigFD+"="+strconv.Itoa(cfg.HostListenFD+2))
	return nil
}

// runeletFiles is how many descriptors beforeStart appended for PID 1.
const runeletFiles = 3

// afterStart waits for the enclave to be initialised and records the container as created; in the
// foreground (run) it also starts the workload.
func (e *enclaveLaunch) afterStart(startNow bool) func(p *libcontainer.Process) error {
	return func(p *libcontainer.Process) error {
		// Only PID 1 may hold the listener now, so a dead runelet refuses instead of hanging.
		for _, f := range p.ExtraFiles[len(p.ExtraFiles)-runeletFiles:] {
			f.Close()
		}
		e.ln.Close()
		defer e.crash.Close()
		crash := readCrashPipe(e.crash)
		rtPath := e.prep.Config.Settings.RuntimePath
		resp, err := runelet.Ready(runeletSocket(e.root, e.id), e.initTimeout)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// PID 1 is stuck (in a PAL call, say): it goes, and its pipe ends with it.
				_ = p.Signal(unix.SIGKILL)
				phase, _ := runelet.InitOutput(crash.output())
				if phase == "" {
					phase = "init-runelet's start"
				}
				return fmt.Errorf("enclave runtime %s: %s did not finish within %s (%s)", rtPath, phase, e.initTimeout, runelet.EnvInitTimeout)
			}
			note := exitNote(p)
			out := crash.output()
			if c, ok := pal.ParseCrash(out); ok {
				return fmt.Errorf("%s: %w%s", rtPath, c, note)
			}
			// PID 1 ended without an answer: what it said last explains it better than the socket.
			var opErr *net.OpError
			if _, last := runelet.InitOutput(out); last != "" && errors.As(err, &opErr) {
				return fmt.Errorf("enclave runtime %s: %s%s", rtPath, last, note)
			}
			return fmt.Errorf("enclave runtime %s: %w%s", rtPath, err, note)
		}
		st := &enclaveState{Settings: e.prep.Config.Settings, Measurement: resp.Measurement, Phase: phaseCreated}
		logrus.WithFields(logrus.Fields{"id": e.id, "tee": st.Settings.Type, "runtime": st.Settings.RuntimePath, "measurement": st.Measurement}).Debug("enclave ready")
		if err := st.save(e.root, e.id); err != nil {
			return err
		}
		if !startNow {
			return nil
		}
		if err := markStarted(e.root, e.id); err != nil {
			return err
		}
		if resp, err := runelet.Start(runeletSocket(e.root, e.id)); err != nil {
			// PID 1 died while starting the workload (a PAL that crashed in pal_exec, say): its
			// exit status and its own report on stderr tell the rest, as for any workload.
			if resp != nil || !exited(p) {
				unmarkStarted(e.root, e.id)
				return err
			}
		}
		return nil
	}
}

// exited reports whether PID 1 has ended, without reaping it (the runner waits for it).
func exited(p *libcontainer.Process) bool {
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
func exitNote(p *libcontainer.Process) string {
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
