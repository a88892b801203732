package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/runtimes"
)

// prepareMain is `init-runelet prepare`: on the host, for rune create, a JSON PrepareRequest on
// stdin, a PrepareResponse on stdout (runtimes.Prepare does the work). rune runs it under bounds
// (enclavehost.Prepare) and reads the phase descriptor to name the phase when a bound stops it.
func prepareMain() int {
	var req agent.PrepareRequest
	var resp *agent.PrepareResponse
	if err := json.NewDecoder(io.LimitReader(os.Stdin, agent.MaxPrepareRequest)).Decode(&req); err != nil {
		resp = agent.PrepareError(enclave.WithKind(enclave.KindInvalid, fmt.Errorf("prepare: read request: %w", err)))
	} else {
		var err error
		if resp, err = runtimes.Prepare(context.Background(), &req, openPhases(req.PhaseFD).enter); err != nil {
			resp = agent.PrepareError(err)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
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
