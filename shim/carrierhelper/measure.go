package carrierhelper

import (
	"context"
	"os"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclavehost"
)

// measure has the runelet measure the workload exactly as `rune create` has it measured
// (enclavehost.Prepare with the same request rune builds), so that the manifest holds the
// value rune will compare with. For a wasm module this also validates it.
func measure(ctx context.Context, runePath string, p *plan) (string, error) {
	bin, err := runeletFor(runePath)
	if err != nil {
		return "", err
	}
	resp, err := enclavehost.Prepare(ctx, bin, &agent.PrepareRequest{
		Settings: *p.settings,
		Rootfs:   p.rootfs,
		Path:     p.entrypoint.Path,
		Launch:   agent.Launch{Args: p.entrypoint.Args, Env: p.entrypoint.Env, Cwd: p.entrypoint.Cwd},
		// The key file rune will use: prepare endorses a sim enclave key with it.
		SimPlatformKey: os.Getenv("RUNE_SIM_PLATFORM_KEY"),
	})
	if err != nil {
		return "", err
	}
	return resp.Measurement, nil
}

// runeletFor finds the runelet rune will use: $RUNE_RUNELET (rune inherits the shim's
// environment), else init-runelet beside rune, else where enclavehost.FindRunelet looks.
func runeletFor(runePath string) (string, error) {
	if p := os.Getenv("RUNE_RUNELET"); p != "" {
		return p, nil
	}
	if runePath != "" {
		p := filepath.Join(filepath.Dir(runePath), "init-runelet")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return enclavehost.FindRunelet()
}
