package inclavared

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
)

// Attester kinds for EvidenceConfig.Kind.
const (
	AttesterSim   = "sim"   // simulated TEE: SimPlatformKey (host side) or SimEnclaveKey
	AttesterTDX   = "tdx"   // configfs-tsm in a TDX guest
	AttesterSNP   = "snp"   // configfs-tsm or /dev/sev-guest in an SNP guest
	AttesterAgent = "agent" // the runelet's agent socket, inside an enclave container
)

// SimRuntimeName is the runtime name a host-side sim inclavared endorses itself with.
const SimRuntimeName = "inclavared"

// EvidenceConfig chooses where evidence comes from.
type EvidenceConfig struct {
	Kind string
	// SimPlatformKey is the sim platform key file (created if absent, like rune does): the daemon
	// endorses its own executable's SHA-256 as its measurement.
	SimPlatformKey string
	// SimEnclaveKey is an endorsed sim enclave key file (sim.EnclaveKey.MarshalBinary).
	SimEnclaveKey string
	// AgentSocket is the runelet agent socket; "" means agent.ContainerSocket.
	AgentSocket string
}

// EvidenceSource returns the evidence function for cfg and a one-line description of it.
func EvidenceSource(cfg EvidenceConfig) (enclavetls.EvidenceFunc, string, error) {
	switch cfg.Kind {
	case AttesterSim:
		switch {
		case cfg.SimPlatformKey != "" && cfg.SimEnclaveKey != "":
			return nil, "", errors.New("sim attester: give a platform key or an enclave key, not both")
		case cfg.SimPlatformKey != "":
			p, err := sim.LoadOrCreatePlatform(cfg.SimPlatformKey)
			if err != nil {
				return nil, "", fmt.Errorf("sim attester: %w", err)
			}
			m, err := SelfMeasurement()
			if err != nil {
				return nil, "", fmt.Errorf("sim attester: %w", err)
			}
			key, err := p.Endorse(m, SimRuntimeName)
			if err != nil {
				return nil, "", fmt.Errorf("sim attester: %w", err)
			}
			return simEvidence(key), "sim (SIMULATED, NOT A TEE), measurement " + m, nil
		case cfg.SimEnclaveKey != "":
			b, err := os.ReadFile(cfg.SimEnclaveKey)
			if err != nil {
				return nil, "", fmt.Errorf("sim attester: %w", err)
			}
			key, err := sim.UnmarshalEnclaveKey(b)
			if err != nil {
				return nil, "", fmt.Errorf("sim attester: %s: %w", cfg.SimEnclaveKey, err)
			}
			return simEvidence(key), "sim (SIMULATED, NOT A TEE), measurement " + key.Endorsement().Measurement, nil
		}
		return nil, "", errors.New("sim attester: needs a platform key file or an enclave key file")
	case AttesterTDX, AttesterSNP:
		a, err := attestation.AttesterFor(attestation.TEE(cfg.Kind))
		if err != nil {
			return nil, "", err
		}
		if err := a.Available(); err != nil {
			return nil, "", fmt.Errorf("%s attester: %w", cfg.Kind, err)
		}
		return enclavetls.AttesterEvidence(a), cfg.Kind, nil
	case AttesterAgent:
		socket := cfg.AgentSocket
		if socket == "" {
			socket = agent.ContainerSocket
		}
		return AgentEvidence(socket), "runelet agent at " + socket, nil
	}
	return nil, "", fmt.Errorf("unknown attester %q (want sim, tdx, snp or agent)", cfg.Kind)
}

func simEvidence(key *sim.EnclaveKey) enclavetls.EvidenceFunc {
	return func(ctx context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return key.Evidence(rd)
	}
}

// AgentEvidence asks the runelet's agent socket for evidence, as a workload in an enclave container
// does.
func AgentEvidence(socket string) enclavetls.EvidenceFunc {
	return func(ctx context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		resp, err := agent.Evidence(ctx, socket, rd[:])
		if err != nil {
			return nil, fmt.Errorf("enclave agent: %w", err)
		}
		if len(resp.Evidence) == 0 {
			return nil, errors.New("enclave agent returned no evidence")
		}
		return resp.Evidence, nil
	}
}

// SelfMeasurement is the SHA-256 of the running executable: what a host-side sim inclavared
// endorses as its measurement (and what a policy for it lists).
func SelfMeasurement() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("measure self: %w", err)
	}
	return FileMeasurement(exe)
}

// FileMeasurement is the lower-case hex SHA-256 of a file's contents.
func FileMeasurement(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("measure %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("measure %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
