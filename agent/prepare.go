package agent

import "github.com/inclavare-containers/inclavare-go/enclave"

// PrepareRequest asks `init-runelet prepare`, on the host, to do what needs the enclave runtimes'
// code at create: measure the entrypoint as the runtime will (and, for wasm, validate and precompile
// the module), and for sim endorse a per-enclave key. rune delegates it so that rune itself stays as
// small and quick to start as runc: every container command pays for rune's start-up. "Prepare"
// means this step and nothing else.
type PrepareRequest struct {
	Settings enclave.Settings `json:"settings"`
	// Rootfs is the host path of the container's root file system.
	Rootfs string `json:"rootfs"`
	// Path is the entrypoint's program, resolved inside the rootfs.
	Path   string `json:"path"`
	Launch Launch `json:"launch"`
	// CacheDir is the root of the host's compiled-module cache ("" for none); the response names the
	// module's own entry in it.
	CacheDir string `json:"cache_dir,omitempty"`
	// SimPlatformKey is the sim platform key file ("" means the default path).
	SimPlatformKey string `json:"sim_platform_key,omitempty"`
	// MaxModuleSize caps the size of a wasm module, in bytes (0: no cap). The host sets it from
	// its limits when it is 0.
	MaxModuleSize int64 `json:"max_module_size,omitempty"`
	// PhaseFD is the descriptor on which prepare names each phase it enters, one per line; set by
	// the host.
	PhaseFD int `json:"phase_fd,omitempty"`
}

// PrepareResponse is what `init-runelet prepare` found.
type PrepareResponse struct {
	Measurement string `json:"measurement"`
	EnclaveKey  []byte `json:"enclave_key,omitempty"`
	// CacheEntry is the host directory holding this module's compiled code and nothing else: what
	// rune mounts read-only for the runelet.
	CacheEntry string `json:"cache_entry,omitempty"`
	// Error, Kind and Phase are a failure, as in Response.
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Phase string `json:"phase,omitempty"`
}

// PrepareError is the response that carries err across, kind and all.
func PrepareError(err error) *PrepareResponse {
	k, phase := enclave.KindOf(err)
	return &PrepareResponse{Error: err.Error(), Kind: string(k), Phase: phase}
}

// Err is the error r carries, nil when none, with its kind.
func (r *PrepareResponse) Err() error {
	return enclave.RemoteError(enclave.Kind(r.Kind), r.Phase, r.Error)
}

// MaxPrepareRequest bounds the request prepare reads; rune refuses larger launch configurations
// before (CheckLaunchSize).
const MaxPrepareRequest = 4 << 20

// Phases of `init-runelet prepare`, named in its errors.
const (
	PhaseStart      = "starting init-runelet prepare"
	PhaseReadModule = "reading the wasm module"
	PhaseValidate   = "validating the wasm module"
	PhaseCompile    = "compiling the wasm module"
	PhaseMeasure    = "measuring the entrypoint"
	PhaseMeasurePAL = "measuring the PAL"
	PhaseEndorse    = "endorsing the sim enclave key"
)

// EnvMaxModuleSize caps a wasm module's size (bytes, with an optional K, M or G suffix): rune
// reads it, prepare names it when it refuses a module.
const EnvMaxModuleSize = "RUNE_WASM_MAX_MODULE_SIZE"
