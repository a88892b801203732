// Package pal loads an enclave runtime's PAL (a C shared library implementing
// the Enclave Runtime PAL API v1, v2 or v3 of Inclavare Containers, declared
// in include/pal.h) and drives it as an enclave.Runtime.
//
// It is used by the init-runelet, inside the container: Load validates and
// dlopen()s the library named by ENCLAVE_RUNTIME_PATH, Init calls pal_init,
// Spawn calls pal_create_process and pal_exec (pal_exec alone for v1), a
// Proc's Signal calls pal_kill, Destroy calls pal_destroy, and Report calls
// v3's pal_get_local_report.
//
// What it must never do: run a workload any other way than through the PAL,
// call a PAL function the PAL's version does not define, or accept a PAL
// above the highest version it knows (MaxVersion).
//
// Isolation: a PAL runs inside the process that loads it. A PAL that
// crashes takes that process down with it, which is why rune loads PALs only
// in the runelet, a separate process; palcrash.Parse turns the runelet's crash
// output into an error naming the PAL call that crashed, and ReportCrashes
// makes that output one line instead of a Go crash report.
//
// Threads and children: PAL calls are made from whatever OS thread the
// calling goroutine runs on, as the original rune did; a PAL may not assume
// one thread for all calls (each blocking pal_exec occupies its own thread).
// No LockOSThread is needed for correctness of the API. Children that a PAL
// forks are the PAL's to reap (the reference PAL waitpid()s its own
// children): the Go runtime never reaps processes it did not start, even
// with os/signal watching SIGCHLD, so nothing in the runelet may call
// wait4(-1, ...) (a PID 1 orphan reaper) while a PAL is running, or it will
// steal the PAL's exit statuses.
package pal
