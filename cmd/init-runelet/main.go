// Command init-runelet is PID 1 of an enclave container (`init`) and the process `rune exec` runs in
// one (`exec -- args…`). rune mounts it into the container and runs it through the host's dynamic
// loader; it is not meant to be started by hand.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	_ "github.com/inclavare-containers/inclavare-go/attestation/snp" // SEV-SNP attester
	_ "github.com/inclavare-containers/inclavare-go/attestation/tdx" // TDX attester
	"github.com/inclavare-containers/inclavare-go/enclave"
	_ "github.com/inclavare-containers/inclavare-go/enclave/native" // registers builtin:native
	_ "github.com/inclavare-containers/inclavare-go/enclave/wasm"   // registers builtin:wasm
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/runelet"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: init-runelet init | exec -- command [args…] | prepare | sim-platform-cert [KEYFILE]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		os.Exit(runelet.Main(openRuntime, openEvidence))
	case "prepare":
		os.Exit(prepareMain())
	case "sim-platform-cert":
		os.Exit(simPlatformCertMain(os.Args[2:]))
	case "exec":
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		os.Exit(runelet.Exec(openRuntime, args))
	default:
		fmt.Fprintf(os.Stderr, "init-runelet: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// openRuntime makes the enclave runtime. While PID 1 initialises, its stderr is rune's crash pipe
// (cfg.CrashFD set): it names each phase there, so that rune create can say which one never ended.
func openRuntime(cfg *runelet.Config) (enclave.Runtime, error) {
	phase := func(string) {}
	if cfg.CrashFD > 0 {
		phase = func(p string) { fmt.Fprintln(os.Stderr, runelet.InitPhasePrefix+p) }
	}
	if name, ok := cfg.Settings.Builtin(); ok {
		phase(runelet.InitPhaseBuiltin(cfg.Settings.RuntimePath))
		return enclave.Builtin(name)
	}
	// A PAL that crashes, even once the workload runs, is one line on stderr, not a Go trace.
	if err := pal.ReportCrashes("init-runelet"); err != nil {
		return nil, err
	}
	phase(runelet.InitPhaseLoadPAL)
	l, err := pal.Load(cfg.RuntimePath)
	if err != nil {
		return nil, err
	}
	// Load called pal_get_version; the runelet calls pal_init next.
	phase(runelet.InitPhasePALInit)
	return l, nil
}

// openEvidence gives the enclave its evidence source: the endorsed per-enclave key for sim, the
// TEE's attester (configfs-tsm, /dev/sev-guest) for hardware. An enclave without one still runs;
// requests for evidence then fail with the reason.
func openEvidence(cfg *runelet.Config) (runelet.EvidenceSource, error) {
	if cfg.Settings.Type == enclave.TypeSim {
		if len(cfg.EnclaveKey) == 0 {
			return nil, errors.New("sim enclave without an endorsed enclave key")
		}
		key, err := sim.UnmarshalEnclaveKey(cfg.EnclaveKey)
		if err != nil {
			return nil, fmt.Errorf("sim enclave key: %w", err)
		}
		return func(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) { return key.Evidence(rd) }, nil
	}
	a, err := attestation.AttesterFor(attestation.TEE(cfg.Settings.Type))
	if err != nil {
		return nil, nil
	}
	if err := a.Available(); err != nil {
		return nil, nil
	}
	return a.Evidence, nil
}
