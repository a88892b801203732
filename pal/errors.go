package pal

import (
	"fmt"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// CallError is a PAL function's failure: it returned a negative errno.
type CallError struct {
	// Call is the PAL function, e.g. "pal_init".
	Call string
	// Code is what it returned, e.g. -22.
	Code int
}

func (e *CallError) Error() string {
	return fmt.Sprintf("%s: %d (%s)", e.Call, e.Code, errnoText(e.Code))
}

// Is makes a PAL call's failure enclave.ErrPAL, wherever it is looked at (and across the agent
// protocol, which carries its kind).
func (e *CallError) Is(target error) bool { return target == enclave.ErrPAL }

// Unwrap gives the errno, so that errors.Is(err, syscall.EINVAL) works.
func (e *CallError) Unwrap() error {
	if e.Code < 0 && e.Code > -4096 {
		return syscall.Errno(-e.Code)
	}
	return nil
}

func errnoText(code int) string {
	if code < 0 && code > -4096 {
		return syscall.Errno(-code).Error()
	}
	return "outside the errno range: a PAL-specific failure"
}

// check turns a PAL return value into an error: the PAL API counts every
// negative value as failure and everything else as success.
func check(call string, ret int) error {
	if ret < 0 {
		return &CallError{Call: call, Code: ret}
	}
	return nil
}
