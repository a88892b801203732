// Package runtimes links the code of every enclave runtime of this build, the PAL loader (package
// pal, cgo) and the built-in Go runtimes (builtin:wasm, builtin:native), and is the one place that
// maps an enclave.RuntimeRef to that code: PID 1 and the exec'd runelet open their runtime with
// Open, and `init-runelet prepare` measures with Measure (Prepare).
//
// Only the init-runelet binary links it. rune, the shim and the tenant's tools must never: they
// decide from enclave.RuntimeRef alone and stay small and free of the runtimes' code.
package runtimes

import (
	"context"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
	_ "github.com/inclavare-containers/inclavare-go/enclave/native" // registers builtin:native
	_ "github.com/inclavare-containers/inclavare-go/enclave/wasm"   // registers builtin:wasm
	"github.com/inclavare-containers/inclavare-go/pal"
)

// Open makes a fresh instance of the enclave runtime r: the built-in runtime, or the PAL library at
// r.PAL, loaded (pal_get_version) but not initialised. phase, when not nil, is told each phase
// (agent.InitPhase*) before it begins, so that a runtime that never returns can be named.
func Open(r enclave.RuntimeRef, phase func(string)) (enclave.Runtime, error) {
	if phase == nil {
		phase = func(string) {}
	}
	if !r.IsPAL() {
		phase(agent.InitPhaseBuiltin(r.String()))
		return enclave.Builtin(r.Builtin)
	}
	// A PAL that crashes, even once the workload runs, is one line on stderr, not a Go trace.
	if err := pal.ReportCrashes("init-runelet"); err != nil {
		return nil, err
	}
	phase(agent.InitPhaseLoadPAL)
	l, err := pal.Load(r.PAL)
	if err != nil {
		return nil, err
	}
	// Load called pal_get_version; the caller calls pal_init next.
	phase(agent.InitPhasePALInit)
	return l, nil
}

// Measure computes, on the host, the measurement that runtime r will report for p once
// initialised with cfg, without running p: a built-in runtime is initialised and asked; a PAL is
// never loaded on the host, its file is hashed (pal.Measure).
func Measure(ctx context.Context, r enclave.RuntimeRef, cfg enclave.Config, p enclave.Process) (string, error) {
	if r.IsPAL() {
		return pal.Measure(r.PAL, cfg, p)
	}
	rt, err := enclave.Builtin(r.Builtin)
	if err != nil {
		return "", err
	}
	if err := rt.Init(ctx, cfg); err != nil {
		return "", err
	}
	defer rt.Destroy()
	return rt.Measurement(p)
}
