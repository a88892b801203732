package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/runelet"
	"github.com/inclavare-containers/inclavare-go/sealed"
	"golang.org/x/sys/unix"
)

// prepareMain is `init-runelet prepare`: on the host, for rune create, a JSON PrepareRequest on stdin,
// a PrepareResponse on stdout. rune runs it under bounds (runelet.HostPrepare): it handles what the
// pod supplied (the entrypoint file, a wasm module), so it says on the phase descriptor what it is
// doing, for rune to name the phase when a bound stops it.
func prepareMain() int {
	var req runelet.PrepareRequest
	var resp runelet.PrepareResponse
	if err := json.NewDecoder(io.LimitReader(os.Stdin, runelet.MaxPrepareRequest)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("prepare: read request: %v", err)
	} else {
		ph := openPhases(req.PhaseFD)
		if err := prepare(&req, &resp, ph); err != nil {
			resp.Error = err.Error()
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(&resp); err != nil {
		return 1
	}
	return 0
}

// phases writes each phase, one line, to the descriptor rune gave (none: nowhere).
type phases struct {
	mu sync.Mutex
	f  *os.File
}

func openPhases(fd int) *phases {
	if fd < 3 {
		return &phases{}
	}
	return &phases{f: os.NewFile(uintptr(fd), "phases")}
}

func (p *phases) enter(phase string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f != nil {
		_, _ = p.f.WriteString(phase + "\n")
	}
}

func prepare(req *runelet.PrepareRequest, resp *runelet.PrepareResponse, ph *phases) error {
	s := req.Settings
	p := enclave.Process{Path: req.Path, Args: req.Launch.Args, Env: req.Launch.Env, Dir: req.Launch.Cwd, Secrets: s.KBS.Measured()}
	if s.KBS != nil && len(s.KBS.Layers) > 0 {
		ph.enter(runelet.PhaseMeasure)
		var err error
		if p.Layers, err = runelet.MeasuredLayers(req.Rootfs, s.KBS.Layers); err != nil {
			return err
		}
	}
	_, inLayer := p.CodeInLayer()
	cfg := enclave.Config{Type: s.Type, RuntimePath: s.RuntimePath, Args: s.Args, LogLevel: s.LogLevel, Rootfs: req.Rootfs}
	name, builtin := s.Builtin()
	var err error
	switch {
	case !builtin:
		ph.enter(runelet.PhaseMeasurePAL)
		resp.Measurement, err = pal.Measure(s.RuntimePath, cfg, p)
	default:
		switch {
		case inLayer:
			// The code is in an encrypted layer: only the enclave sees it, after attesting.
		case name == "wasm":
			if resp.CacheEntry, err = prepareWasm(req, ph); err != nil {
				return err
			}
		default:
			if err := checkSealedEntrypoint(req); err != nil {
				return err
			}
		}
		ph.enter(runelet.PhaseMeasure)
		rt, berr := enclave.Builtin(name)
		if berr != nil {
			return berr
		}
		if err := rt.Init(context.Background(), cfg); err != nil {
			return err
		}
		resp.Measurement, err = rt.Measurement(p)
		rt.Destroy()
	}
	if err != nil {
		return err
	}
	if s.Type == enclave.TypeSim {
		ph.enter(runelet.PhaseEndorse)
		platform, err := sim.LoadOrCreatePlatform(req.SimPlatformKey)
		if err != nil {
			return fmt.Errorf("sim platform key: %w", err)
		}
		key, err := platform.Endorse(resp.Measurement, s.RuntimePath)
		if err != nil {
			return fmt.Errorf("endorse sim enclave: %w", err)
		}
		if resp.EnclaveKey, err = key.MarshalBinary(); err != nil {
			return err
		}
	}
	return nil
}

// prepareWasm rejects an invalid module at create and compiles it into its own entry of the host's
// code cache, whose directory it returns: rune mounts that entry, and only it, read-only into the
// container, so that start does not compile again and the container sees no other module's code.
// A module over the size cap is refused from its size alone, before it is read.
func prepareWasm(req *runelet.PrepareRequest, ph *phases) (string, error) {
	ph.enter(runelet.PhaseReadModule)
	data, err := readModule(req.Rootfs, req.Path, req.MaxModuleSize)
	if err != nil {
		return "", err
	}
	if sealed.IsSealed(data) {
		// Its plaintext is for the enclave only: checked and compiled there, after attestation.
		f, err := sealed.Parse(data)
		if err != nil {
			return "", fmt.Errorf("wasm module %s: %w", req.Path, err)
		}
		return "", needBroker(req, f.KeyID)
	}
	if req.CacheDir == "" {
		ph.enter(runelet.PhaseValidate)
		if err := wasm.Validate(data); err != nil {
			return "", fmt.Errorf("wasm module %s: %w", req.Path, err)
		}
		return "", nil
	}
	entry, err := wasm.CacheModule(context.Background(), req.CacheDir, data, func(phase string) {
		switch phase {
		case "validate":
			ph.enter(runelet.PhaseValidate)
		case "compile":
			ph.enter(runelet.PhaseCompile)
		}
	})
	if err != nil {
		return "", fmt.Errorf("wasm module %s: %w", req.Path, err)
	}
	return entry, nil
}

// checkSealedEntrypoint refuses at create a sealed native entrypoint that could never start.
func checkSealedEntrypoint(req *runelet.PrepareRequest) error {
	f, err := openInRoot(req.Rootfs, req.Path)
	if err != nil {
		return fmt.Errorf("executable %s: %w", req.Path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil // measuring it says what is wrong
	}
	head := make([]byte, sealed.HeadSize)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("executable %s: %w", req.Path, err)
	}
	if !sealed.IsSealed(head[:n]) {
		return nil
	}
	h, _, err := sealed.ParseHeader(head[:n])
	if err != nil {
		return fmt.Errorf("executable %s: %w", req.Path, err)
	}
	return needBroker(req, h.KeyID)
}

// needBroker is the error for a workload sealed with keyID in a container without a key broker.
func needBroker(req *runelet.PrepareRequest, keyID string) error {
	if req.Settings.KBS != nil {
		return nil
	}
	return fmt.Errorf("%s is sealed with key %s: the enclave fetches that key from the tenant's key broker after attesting, "+
		"and this container names none (set %s and %s or %s)", req.Path, keyID, enclave.EnvKBSURL, enclave.EnvKBSPin, enclave.EnvKBSCA)
}

// openInRoot opens the file p inside rootfs, resolved by the kernel as if rootfs were "/", so
// that no symlink of the image leads outside it.
func openInRoot(rootfs, p string) (*os.File, error) {
	dir, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	defer unix.Close(dir)
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dir, p, how)
		if (err == unix.EAGAIN || err == unix.EINTR) && i < 64 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}

// readModule reads the regular file module inside rootfs (resolved by the kernel as if rootfs
// were "/", so that no symlink of the image leads outside it), refusing one larger than max bytes
// (0: no cap) from its size before reading it, and reading at most max+1 bytes in case it grows.
func readModule(rootfs, module string, max int64) ([]byte, error) {
	f, err := openInRoot(rootfs, module)
	if err != nil {
		return nil, fmt.Errorf("wasm module %s: %w", module, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wasm module %s: %w", module, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("wasm module %s: not a regular file", module)
	}
	if max > 0 && fi.Size() > max {
		return nil, tooLarge(module, fmt.Sprintf("is %d bytes", fi.Size()), max)
	}
	var r io.Reader = f
	if max > 0 {
		r = io.LimitReader(f, max+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("wasm module %s: %w", module, err)
	}
	if max > 0 && int64(len(data)) > max {
		return nil, tooLarge(module, "grew while read", max)
	}
	return data, nil
}

func tooLarge(module, what string, max int64) error {
	return fmt.Errorf("wasm module %s %s, more than the %s limit for a module (%s)",
		module, what, runelet.FormatBytes(max), runelet.EnvMaxModuleSize)
}

// simPlatformCertMain is `init-runelet sim-platform-cert [KEYFILE]`.
func simPlatformCertMain(args []string) int {
	path := ""
	if len(args) > 0 {
		path = args[0]
	}
	p, err := sim.LoadOrCreatePlatform(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim platform key:", err)
		return 1
	}
	os.Stdout.Write(p.CertificatePEM())
	return 0
}
