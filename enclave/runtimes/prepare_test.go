package runtimes

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

// rootfsWith is a rootfs holding data at path.
func rootfsWith(t *testing.T, path string, data []byte, mode os.FileMode) string {
	t.Helper()
	root := t.TempDir()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return root
}

func request(rootfs, runtime, path string) *agent.PrepareRequest {
	return &agent.PrepareRequest{
		Settings: enclave.Settings{Type: attestation.Sim, RuntimePath: runtime, LogLevel: "info"},
		Rootfs:   rootfs, Path: path, Launch: agent.Launch{Args: []string{path}, Cwd: "/"},
	}
}

// record collects the phases prepare names.
type record struct{ phases []string }

func (r *record) phase(p string) { r.phases = append(r.phases, p) }

// TestPrepareRefusesOversizedModule: a module over the size cap is refused from its size, in the
// phase that reads it, naming the cap and its variable.
func TestPrepareRefusesOversizedModule(t *testing.T) {
	req := request(rootfsWith(t, "/app/x.wasm", make([]byte, 100), 0o644), "builtin:wasm", "/app/x.wasm")
	req.MaxModuleSize = 64
	var r record
	_, err := Prepare(context.Background(), req, r.phase)
	if err == nil || !strings.Contains(err.Error(), "is 100 bytes, more than the 64 bytes limit for a module ("+agent.EnvMaxModuleSize+")") {
		t.Fatalf("oversized module: %v", err)
	}
	// rune reads the kind across the process boundary.
	if !errors.Is(agent.PrepareError(err).Err(), enclave.ErrLimit) {
		t.Errorf("oversized module: %v is not a limit", err)
	}
	if !slices.Equal(r.phases, []string{agent.PhaseReadModule}) {
		t.Errorf("phases %q", r.phases)
	}
}

// TestPrepareRefusesInvalidModule: a module that is not wasm fails create, in the validate phase.
func TestPrepareRefusesInvalidModule(t *testing.T) {
	req := request(rootfsWith(t, "/app/x.wasm", []byte("not wasm at all"), 0o644), "builtin:wasm", "/app/x.wasm")
	var r record
	if _, err := Prepare(context.Background(), req, r.phase); err == nil || !strings.Contains(err.Error(), "wasm module /app/x.wasm") || !errors.Is(err, enclave.ErrInvalid) {
		t.Fatalf("invalid module: %v", err)
	}
	if !slices.Equal(r.phases, []string{agent.PhaseReadModule, agent.PhaseValidate}) {
		t.Errorf("phases %q", r.phases)
	}
}

// TestPrepareSealedNeedsBroker: a sealed workload in a container that names no key broker could
// never start: create refuses it, saying which settings are missing.
func TestPrepareSealedNeedsBroker(t *testing.T) {
	data, err := sealed.Seal([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, sealed.KeySize), "default/key/app")
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"builtin:wasm", "builtin:native"} {
		req := request(rootfsWith(t, "/app/x", data, 0o755), rt, "/app/x")
		if _, err := Prepare(context.Background(), req, nil); err == nil || !strings.Contains(err.Error(), "is sealed with key default/key/app") ||
			!strings.Contains(err.Error(), enclave.EnvKBSURL) {
			t.Errorf("%s: %v", rt, err)
		}
	}
}

// TestPrepareNative measures an entrypoint as builtin:native will and endorses a sim key for it.
func TestPrepareNative(t *testing.T) {
	exe, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	req := request(rootfsWith(t, "/bin/prog", exe, 0o755), "builtin:native", "/bin/prog")
	req.SimPlatformKey = filepath.Join(t.TempDir(), "platform-key.pem")
	var r record
	resp, err := Prepare(context.Background(), req, r.phase)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(resp.Measurement); err != nil || len(b) != 32 {
		t.Errorf("measurement %q", resp.Measurement)
	}
	if len(resp.EnclaveKey) == 0 {
		t.Error("no sim enclave key")
	}
	if !slices.Equal(r.phases, []string{agent.PhaseMeasure, agent.PhaseEndorse}) {
		t.Errorf("phases %q", r.phases)
	}
	// The measurement is Measure's, which the runtime itself reports in the enclave.
	cfg := enclave.Config{Type: attestation.Sim, RuntimePath: "builtin:native", LogLevel: "info", Rootfs: req.Rootfs}
	m, err := Measure(context.Background(), enclave.NativeRuntime, cfg, enclave.Process{Path: "/bin/prog", Args: []string{"/bin/prog"}, Dir: "/"})
	if err != nil || m != resp.Measurement {
		t.Errorf("Measure = %q, %v; prepare measured %q", m, err, resp.Measurement)
	}
}

func TestOpen(t *testing.T) {
	for _, r := range []enclave.RuntimeRef{enclave.WasmRuntime, enclave.NativeRuntime} {
		var phases record
		rt, err := Open(r, phases.phase)
		if err != nil || rt == nil {
			t.Errorf("%s: %v", r, err)
		}
		if !slices.Equal(phases.phases, []string{agent.InitPhaseBuiltin(r.String())}) {
			t.Errorf("%s: phases %q", r, phases.phases)
		}
	}
	if _, err := Open(enclave.RuntimeRef{Builtin: "other"}, nil); err == nil {
		t.Error("unknown built-in runtime opened")
	}
	if _, err := Open(enclave.RuntimeRef{PAL: "/nonexistent/libpal.so"}, nil); err == nil || !strings.Contains(err.Error(), "no such file") || !errors.Is(err, enclave.ErrNotFound) {
		t.Errorf("missing PAL: %v", err)
	}
	if _, err := Open(enclave.RuntimeRef{PAL: "/etc/hostname"}, nil); !errors.Is(err, enclave.ErrPAL) {
		t.Errorf("PAL that is no library: %v", err)
	}
	// A missing entrypoint is not found, in the container and in prepare alike.
	req := request(t.TempDir(), "builtin:wasm", "/app/none.wasm")
	if _, err := Prepare(context.Background(), req, nil); !errors.Is(agent.PrepareError(err).Err(), enclave.ErrNotFound) {
		t.Errorf("missing module: %v", err)
	}
}
