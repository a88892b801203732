package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/runtimes"
	"github.com/inclavare-containers/inclavare-go/runelet"
)

// openRuntime makes the enclave runtime. While PID 1 initialises, its stderr is rune's crash pipe
// (cfg.CrashFD set): it names each phase there, so that rune create can say which one never ended.
func openRuntime(cfg *agent.Config) (enclave.Runtime, error) {
	var phase func(string)
	if cfg.CrashFD > 0 {
		phase = func(p string) { fmt.Fprintln(os.Stderr, agent.InitPhasePrefix+p) }
	}
	return runtimes.Open(cfg.Runtime(), phase)
}

// openEvidence gives the enclave its evidence source: the endorsed per-enclave key for sim, the
// TEE's attester (configfs-tsm, /dev/sev-guest) for hardware. An enclave without one still runs;
// requests for evidence then fail with the reason.
func openEvidence(cfg *agent.Config) (runelet.EvidenceSource, error) {
	if cfg.Settings.Type == attestation.Sim {
		if len(cfg.EnclaveKey) == 0 {
			return nil, errors.New("sim enclave without an endorsed enclave key")
		}
		key, err := sim.UnmarshalEnclaveKey(cfg.EnclaveKey)
		if err != nil {
			return nil, fmt.Errorf("sim enclave key: %w", err)
		}
		return func(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) { return key.Evidence(rd) }, nil
	}
	a, err := attestation.AttesterFor(cfg.Settings.Type)
	if err != nil {
		return nil, nil
	}
	if err := a.Available(); err != nil {
		return nil, nil
	}
	return a.Evidence, nil
}
