package runtimes

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/imagelayer"
	"github.com/inclavare-containers/inclavare-go/internal/bytesize"
	"github.com/inclavare-containers/inclavare-go/internal/openat2"
	"github.com/inclavare-containers/inclavare-go/sealed"
	"golang.org/x/sys/unix"
)

// Prepare is the work of `init-runelet prepare` (the other side of enclavehost.Prepare), on the
// host, for rune create: it measures the entrypoint as the enclave runtime will, validates and
// precompiles a wasm module into the host's cache, and for sim endorses a per-enclave key. It
// handles what the pod supplied (the entrypoint file, a wasm module), so it tells phase, before
// each step, what it is doing: rune names that phase when one of its bounds stops prepare.
func Prepare(ctx context.Context, req *agent.PrepareRequest, phase func(string)) (*agent.PrepareResponse, error) {
	if phase == nil {
		phase = func(string) {}
	}
	var resp agent.PrepareResponse
	if err := prepare(ctx, req, &resp, phase); err != nil {
		return nil, err
	}
	return &resp, nil
}

func prepare(ctx context.Context, req *agent.PrepareRequest, resp *agent.PrepareResponse, phase func(string)) error {
	s := req.Settings
	p := enclave.Process{Path: req.Path, Args: req.Launch.Args, Env: req.Launch.Env, Dir: req.Launch.Cwd, Secrets: s.KBS.Measured()}
	if s.KBS != nil && len(s.KBS.Layers) > 0 {
		phase(agent.PhaseMeasure)
		var err error
		if p.Layers, err = measuredLayers(req.Rootfs, s.KBS.Layers); err != nil {
			return err
		}
	}
	_, inLayer := p.CodeInLayer()
	cfg := enclave.Config{Type: s.Type, RuntimePath: s.RuntimePath, Args: s.Args, LogLevel: s.LogLevel, Rootfs: req.Rootfs}
	r := s.Runtime()
	switch {
	case r.IsPAL():
		phase(agent.PhaseMeasurePAL)
	case inLayer:
		// The code is in an encrypted layer: only the enclave sees it, after attesting.
		phase(agent.PhaseMeasure)
	case r == enclave.WasmRuntime:
		var err error
		if resp.CacheEntry, err = prepareWasm(ctx, req, phase); err != nil {
			return err
		}
		phase(agent.PhaseMeasure)
	default:
		if err := checkSealedEntrypoint(req); err != nil {
			return err
		}
		phase(agent.PhaseMeasure)
	}
	var err error
	resp.Measurement, err = Measure(ctx, r, cfg, p)
	if err != nil {
		return err
	}
	if s.Type == attestation.Sim {
		phase(agent.PhaseEndorse)
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
func prepareWasm(ctx context.Context, req *agent.PrepareRequest, phase func(string)) (string, error) {
	phase(agent.PhaseReadModule)
	data, err := readModule(req.Rootfs, req.Path, req.MaxModuleSize)
	if err != nil {
		return "", err
	}
	if sealed.IsSealed(data) {
		// Its plaintext is for the enclave only: checked and compiled there, after attestation.
		f, err := sealed.Parse(data)
		if err != nil {
			return "", enclave.WithKind(enclave.KindInvalid, fmt.Errorf("wasm module %s: %w", req.Path, err))
		}
		return "", needBroker(req, f.KeyID)
	}
	interpreted, err := wasm.Interpreted(req.Settings.Args)
	if err != nil {
		return "", enclave.WithKind(enclave.KindInvalid, err)
	}
	if interpreted {
		// engine=interpreter: nothing is compiled to native code, so the host has nothing to do;
		// PID 1 validates and loads the module while it initialises, inside the container's
		// bounds, and an invalid module fails create there (runelet.Preloader).
		return "", nil
	}
	if req.CacheDir == "" {
		phase(agent.PhaseValidate)
		if err := wasm.Validate(data); err != nil {
			return "", enclave.WithKind(enclave.KindInvalid, fmt.Errorf("wasm module %s: %w", req.Path, err))
		}
		return "", nil
	}
	entry, err := wasm.CacheModule(ctx, req.CacheDir, data, func(step string) {
		switch step {
		case "validate":
			phase(agent.PhaseValidate)
		case "compile":
			phase(agent.PhaseCompile)
		}
	})
	if err != nil {
		return "", fmt.Errorf("wasm module %s: %w", req.Path, err)
	}
	return entry, nil
}

// checkSealedEntrypoint refuses at create a sealed native entrypoint that could never start.
func checkSealedEntrypoint(req *agent.PrepareRequest) error {
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
func needBroker(req *agent.PrepareRequest, keyID string) error {
	if req.Settings.KBS != nil {
		return nil
	}
	return enclave.WithKind(enclave.KindInvalid, fmt.Errorf("%s is sealed with key %s: the enclave fetches that key from the tenant's key broker after attesting, "+
		"and this container names none (set %s and %s or %s)", req.Path, keyID, enclave.EnvKBSURL, enclave.EnvKBSPin, enclave.EnvKBSCA))
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
	fd, err := openat2.Open(dir, p, how)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
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
	return enclave.WithKind(enclave.KindLimit, fmt.Errorf("wasm module %s %s, more than the %s limit for a module (%s)",
		module, what, bytesize.Format(max), agent.EnvMaxModuleSize))
}

// measuredLayers is enclave.MeasureLayers for the rootfs at rootfs.
func measuredLayers(rootfs string, layers []enclave.Layer) ([]string, error) {
	root, err := os.Open(rootfs)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	defer root.Close()
	return enclave.MeasureLayers(layers, func(dirs []string) ([]string, error) { return imagelayer.BlobDigests(root, dirs) })
}
