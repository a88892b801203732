// Package enclave holds what an enclave container is made of: its settings (from env or annotations)
// and the Runtime interface through which the init-runelet drives an enclave runtime, whether a C PAL
// (package pal) or a built-in Go runtime (packages under enclave/).
//
// It must never run a workload outside the runtime it was configured with.
package enclave

import (
	"context"
	"os"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
)

// Config is what pal_init receives, plus what a built-in runtime needs to find its workload.
type Config struct {
	// Type is the TEE type (ENCLAVE_TYPE).
	Type tee.TEE
	// RuntimePath is ENCLAVE_RUNTIME_PATH: a PAL library path, or "builtin:wasm" / "builtin:native".
	RuntimePath string
	// Args are ENCLAVE_RUNTIME_ARGS split at commas.
	Args []string
	// LogLevel is ENCLAVE_RUNTIME_LOGLEVEL.
	LogLevel string
	// Rootfs is the root of the workload's file system as the runtime sees it ("/" inside a container).
	Rootfs string
	// CacheDir, when set, is where a runtime may keep host-prepared artefacts (compiled modules).
	CacheDir string
}

// Process is one program to run inside the enclave.
type Process struct {
	// Path is the program inside Rootfs (argv[0] resolved against PATH by the caller).
	Path string
	Args []string
	Env  []string
	Dir  string
	// Secrets is what of the enclave's broker settings its measurement covers (KBS.Measured):
	// which broker it trusts and which resource lands where. Empty: no secrets.
	Secrets []string
	// Layers are the encrypted layers unpacked in the enclave before it runs, as measured:
	// "<hex SHA-256 of the encrypted blob>:<target>" (LayerMeasured). A Path under a target is
	// code the runtime cannot read before the enclave attested: its path is measured instead.
	Layers []string

	Stdin, Stdout, Stderr *os.File

	// Credential, when set, is the user the process runs as, where the runtime runs processes of its
	// own (builtin:native). It is the exec'd runelet's user, so that `exec -u` is honoured.
	Credential *Credential
}

// Credential is a numeric user and group.
type Credential struct {
	UID, GID uint32
}

// Proc is a running enclave process.
type Proc interface {
	// Wait blocks until the process exits and returns its exit status (128+signal when killed).
	Wait() (int, error)
	// Signal delivers sig to the process (pal_kill).
	Signal(sig syscall.Signal) error
}

// Runtime is an enclave runtime. The runelet calls Init once at container create, Spawn for the
// entrypoint at start and for every exec, and Destroy once when the entrypoint has exited.
type Runtime interface {
	// Init creates the enclave (pal_get_version + pal_init for a PAL).
	Init(ctx context.Context, cfg Config) error
	// Spawn starts p inside the enclave (pal_create_process + pal_exec).
	Spawn(ctx context.Context, p Process) (Proc, error)
	// Measurement is the hex digest identifying what Init loaded and Spawn will run for p, as the
	// runtime's written measurement spec defines it; "" when the runtime cannot measure.
	Measurement(p Process) (string, error)
	// Destroy tears the enclave down (pal_destroy).
	Destroy() error
}
