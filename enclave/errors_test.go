package enclave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
	"github.com/opencontainers/runtime-spec/specs-go"
)

type palLike struct{}

func (palLike) Error() string        { return "pal_init: -22" }
func (palLike) Is(target error) bool { return target == ErrPAL }

func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		err   error
		kind  Kind
		phase string
	}{
		{WithKind(KindInvalid, errors.New("bad")), KindInvalid, ""},
		{fmt.Errorf("outer: %w", WithKind(KindHardwareAbsent, errors.New("no TEE"))), KindHardwareAbsent, ""},
		{TimeoutIn("pal_init", errors.New("slow")), KindTimeout, "pal_init"},
		{fmt.Errorf("open: %w", os.ErrNotExist), KindNotFound, ""},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), KindTimeout, ""},
		{fmt.Errorf("spawn: %w", palLike{}), KindPAL, ""},
		{errors.New("plain"), "", ""},
		{nil, "", ""},
	} {
		k, phase := KindOf(tc.err)
		if k != tc.kind || phase != tc.phase {
			t.Errorf("KindOf(%v) = %q, %q; want %q, %q", tc.err, k, phase, tc.kind, tc.phase)
		}
	}
	err := TimeoutIn("pal_init", errors.New("slow"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, &Error{Kind: KindTimeout, Phase: "pal_init"}) || errors.Is(err, &Error{Kind: KindTimeout, Phase: "other"}) || errors.Is(err, ErrPAL) {
		t.Errorf("errors.Is on a timeout in pal_init")
	}
	if err.Error() != "slow" {
		t.Errorf("message %q: a kind adds no words", err)
	}
	// Across a boundary: kind, phase and message only.
	remote := RemoteError(KindTimeout, "pal_init", "slow")
	if !errors.Is(remote, &Error{Kind: KindTimeout, Phase: "pal_init"}) || remote.Error() != "slow" {
		t.Errorf("remote error %v", remote)
	}
	if RemoteError("", "", "") != nil {
		t.Error("no message, yet an error")
	}
	if k, _ := KindOf(RemoteError("", "", "odd")); k != "" {
		t.Errorf("unknown kind became %q", k)
	}
}

// TestSettingsErrorKinds: bad settings are invalid; a TEE this host lacks is hardware absent.
func TestSettingsErrorKinds(t *testing.T) {
	spec := &specs.Spec{Process: &specs.Process{Env: []string{"ENCLAVE_TYPE=nope", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}}}
	if _, err := FromSpec(spec); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown type: %v", err)
	}
	for _, t0 := range []tee.TEE{tee.SGX, tee.TDX, tee.SNP} {
		present := false
		for _, d := range append(tee.Devices(t0), tee.TSMReportDir) {
			if _, err := os.Stat(d); err == nil {
				present = true
			}
		}
		if present {
			continue
		}
		if err := (&Settings{Type: t0}).CheckHost(); !errors.Is(err, ErrHardwareAbsent) {
			t.Errorf("%s on a host without it: %v", t0, err)
		}
	}
}
