package runelet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// PrepareRequest asks `init-runelet prepare`, on the host, to do what needs the enclave runtimes'
// code at create: measure the entrypoint as the runtime will (and, for wasm, validate and precompile
// the module), and for sim endorse a per-enclave key. rune delegates it so that rune itself stays as
// small and quick to start as runc: every container command pays for rune's start-up.
type PrepareRequest struct {
	Settings enclave.Settings `json:"settings"`
	// Rootfs is the host path of the container's root file system.
	Rootfs string `json:"rootfs"`
	// Path is the entrypoint's program, resolved inside the rootfs.
	Path   string `json:"path"`
	Launch Launch `json:"launch"`
	// CacheDir is the host's compiled-module cache ("" for none).
	CacheDir string `json:"cache_dir,omitempty"`
	// SimPlatformKey is the sim platform key file ("" means the default path).
	SimPlatformKey string `json:"sim_platform_key,omitempty"`
}

// PrepareResponse is what `init-runelet prepare` found.
type PrepareResponse struct {
	Measurement string `json:"measurement"`
	EnclaveKey  []byte `json:"enclave_key,omitempty"`
	Error       string `json:"error,omitempty"`
}

// HostPrepare runs `runelet prepare` with req and returns its answer.
func HostPrepare(runelet string, req *PrepareRequest) (*PrepareResponse, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return runHost(runelet, in, "prepare")
}

// SimPlatformCertificate returns the PEM certificate of the sim platform key at keyPath ("" means
// the default), creating the key on first use.
func SimPlatformCertificate(runelet, keyPath string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, runelet, "sim-platform-cert", keyPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s sim-platform-cert: %v: %s", runelet, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func runHost(runelet string, in []byte, mode string) (*PrepareResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, runelet, mode)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var resp PrepareResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("%s %s: %v: %s", runelet, mode, runErr, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("%s %s: bad answer: %w", runelet, mode, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	if runErr != nil {
		return nil, fmt.Errorf("%s %s: %v", runelet, mode, runErr)
	}
	return &resp, nil
}
