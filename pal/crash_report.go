package pal

/*
#include <stdlib.h>
int inclavare_pal_report_crashes(const char *program);
*/
import "C"

import (
	"errors"
	"sync"
	"unsafe"
)

var reportOnce struct {
	sync.Once
	err error
}

// ReportCrashes makes a fault inside a PAL call (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP raised
// by the PAL's code, or by code it calls) end the process with one line on its stderr,
//
//	PROGRAM: enclave runtime crashed in pal_exec: SIGSEGV: segmentation violation
//
// instead of the Go runtime's crash report (which palcrash.Parse also reads), and with death by that
// signal, without a core dump. The runelet calls it before loading a PAL: once the workload runs,
// the runelet's stderr is the workload's, and a page of goroutine traces there is noise to the
// tenant and tells the pod's logs how the runtime is built. Faults outside PAL calls reach the Go
// runtime as before. It must be called before any PAL call, and takes effect once per process.
func ReportCrashes(program string) error {
	reportOnce.Do(func() {
		cs := C.CString(program)
		defer C.free(unsafe.Pointer(cs))
		if C.inclavare_pal_report_crashes(cs) != 0 {
			reportOnce.err = errors.New("pal: install the crash reporter: sigaction failed")
		}
	})
	return reportOnce.err
}
