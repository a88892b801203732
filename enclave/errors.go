package enclave

import (
	"context"
	"errors"
	"io/fs"
	"os"
)

// Kind classifies a failure of an enclave container where it crosses a process boundary (PID 1's
// agent protocol, `init-runelet prepare`), so that the far side branches on what happened, not
// on the words: errors.Is(err, ErrNotFound) holds on both sides.
type Kind string

// The kinds. A failure of no known kind crosses with an empty Kind and matches none of them.
const (
	// KindNotFound: a program, module or PAL the container names does not exist.
	KindNotFound Kind = "not_found"
	// KindInvalid: the settings, the request or the workload are refused as they are.
	KindInvalid Kind = "invalid"
	// KindHardwareAbsent: the TEE (or its attester) the enclave needs is not on this host.
	KindHardwareAbsent Kind = "hardware_absent"
	// KindPAL: the PAL failed (a PAL call returned an error, or the library could not be used).
	KindPAL Kind = "pal_failure"
	// KindTimeout: a phase (Error.Phase) did not finish in time.
	KindTimeout Kind = "timeout"
	// KindLimit: a resource limit (memory, CPU time, tasks, size) stopped the work.
	KindLimit Kind = "limit"
)

// Error is a failure with its kind, and for a timeout the phase it happened in.
type Error struct {
	Kind  Kind
	Phase string
	Err   error
}

// The kinds as targets for errors.Is.
var (
	ErrNotFound       = &Error{Kind: KindNotFound}
	ErrInvalid        = &Error{Kind: KindInvalid}
	ErrHardwareAbsent = &Error{Kind: KindHardwareAbsent}
	ErrPAL            = &Error{Kind: KindPAL}
	ErrTimeout        = &Error{Kind: KindTimeout}
	ErrLimit          = &Error{Kind: KindLimit}
)

// WithKind is err marked with kind k (nil stays nil); its message stays err's own.
func WithKind(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// TimeoutIn is err marked as a timeout in phase.
func TimeoutIn(phase string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: KindTimeout, Phase: phase, Err: err}
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Kind)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches a kind target (ErrNotFound, …; one with a Phase matches that phase only).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Err != nil {
		return false
	}
	return t.Kind == e.Kind && (t.Phase == "" || t.Phase == e.Phase)
}

// KindOf is the kind of err, and its phase: the innermost marked kind wins over the outer ones'
// absence, a missing file is KindNotFound, a deadline KindTimeout; "" when none is known.
func KindOf(err error) (Kind, string) {
	var e *Error
	switch {
	case err == nil:
		return "", ""
	case errors.As(err, &e):
		return e.Kind, e.Phase
	}
	for _, k := range []*Error{ErrNotFound, ErrInvalid, ErrHardwareAbsent, ErrPAL, ErrTimeout, ErrLimit} {
		// Errors of other packages that say their kind themselves (pal.CallError).
		if errors.Is(err, k) {
			return k.Kind, ""
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return KindNotFound, ""
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout, ""
	}
	return "", ""
}

// RemoteError is an error that came across a boundary as its kind, phase and message: it reads
// as the message and matches its kind's target.
func RemoteError(k Kind, phase, msg string) error {
	if msg == "" {
		return nil
	}
	err := errors.New(msg)
	if k == "" {
		return err
	}
	return &Error{Kind: k, Phase: phase, Err: err}
}
