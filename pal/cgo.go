package pal

/*
#cgo CFLAGS: -I${SRCDIR}/include -Wall
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "pal.h"

// The PAL call this thread is in, for the crash reporter (crash_report.c).
extern __thread const char *volatile inclavare_pal_call;
#define PAL_CALL(name, call) \
	do { inclavare_pal_call = (name); int r_ = (call); inclavare_pal_call = 0; return r_; } while (0)

// dlopen and dlerror must run on one thread (dlerror is thread-local), so
// both happen inside this one C call.
static void *palcall_dlopen(const char *path, char *err, size_t errlen)
{
	dlerror();
	inclavare_pal_call = "dlopen";
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	inclavare_pal_call = 0;
	if (!h) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "unknown dlopen error");
	}
	return h;
}

static void *palcall_dlsym(void *h, const char *name)
{
	return dlsym(h, name);
}

static void palcall_dlclose(void *h)
{
	inclavare_pal_call = "dlopen"; // the library's destructors, as its constructors are dlopen's
	dlclose(h);
	inclavare_pal_call = 0;
}

// One trampoline per PAL call. The Go side names the PAL call after the
// "palcall_" prefix, so a crash's goroutine trace names the PAL function
// (see palcrash.Parse).

static int palcall_pal_get_version(void *fn)
{
	PAL_CALL("pal_get_version", ((int (*)(void)) fn)());
}

static int palcall_pal_init(void *fn, const char *args, const char *log_level)
{
	struct pal_attr_t attr = { args, log_level };
	PAL_CALL("pal_init", ((int (*)(const struct pal_attr_t *)) fn)(&attr));
}

static int palcall_pal_init_v3(void *fn, const char *args, const char *log_level,
			       int fd, uint64_t addr)
{
	struct pal_attr_v3_t attr = { { args, log_level }, fd, addr };
	PAL_CALL("pal_init", ((int (*)(const struct pal_attr_v3_t *)) fn)(&attr));
}

static int palcall_pal_exec_v1(void *fn, const char *path, const char **argv,
			       int in, int out, int err, int *exit_code)
{
	struct pal_stdio_fds stdio = { in, out, err };
	PAL_CALL("pal_exec", ((int (*)(const char *, const char **, const struct pal_stdio_fds *, int *)) fn)
		(path, argv, &stdio, exit_code));
}

static int palcall_pal_create_process(void *fn, const char *path, const char **argv,
				      const char **env, int in, int out, int err,
				      int *pid)
{
	struct pal_stdio_fds stdio = { in, out, err };
	struct pal_create_process_args args = { path, argv, env, &stdio, pid };
	PAL_CALL("pal_create_process", ((int (*)(struct pal_create_process_args *)) fn)(&args));
}

static int palcall_pal_exec(void *fn, int pid, int *exit_value)
{
	struct pal_exec_args args = { pid, exit_value };
	PAL_CALL("pal_exec", ((int (*)(struct pal_exec_args *)) fn)(&args));
}

static int palcall_pal_kill(void *fn, int pid, int sig)
{
	PAL_CALL("pal_kill", ((int (*)(int, int)) fn)(pid, sig));
}

static int palcall_pal_destroy(void *fn)
{
	PAL_CALL("pal_destroy", ((int (*)(void)) fn)());
}

static int palcall_pal_get_local_report(void *fn, void *targetinfo, int targetinfo_len,
					void *report, int *report_len)
{
	PAL_CALL("pal_get_local_report", ((int (*)(void *, int, void *, int *)) fn)
		(targetinfo, targetinfo_len, report, report_len));
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Sizes of the SGX structures pal_get_local_report exchanges.
const (
	TargetInfoSize = C.PAL_SGX_TARGET_INFO_SIZE
	ReportSize     = C.PAL_SGX_REPORT_SIZE
)

// MaxVersion is the highest PAL API version this package drives.
const MaxVersion = C.PAL_API_VERSION_MAX

// symbols are the PAL entry points found in a library; nil when absent.
type symbols struct {
	getVersion, init, createProcess, exec, kill, destroy, getLocalReport unsafe.Pointer
}

func dlopen(path string) (unsafe.Pointer, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [1024]C.char
	h := C.palcall_dlopen(cpath, &buf[0], C.size_t(len(buf)))
	if h == nil {
		return nil, errors.New(C.GoString(&buf[0]))
	}
	return h, nil
}

func dlsym(h unsafe.Pointer, name string) unsafe.Pointer {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.palcall_dlsym(h, cname)
}

func dlclose(h unsafe.Pointer) { C.palcall_dlclose(h) }

func lookupSymbols(h unsafe.Pointer) symbols {
	return symbols{
		getVersion:     dlsym(h, "pal_get_version"),
		init:           dlsym(h, "pal_init"),
		createProcess:  dlsym(h, "pal_create_process"),
		exec:           dlsym(h, "pal_exec"),
		kill:           dlsym(h, "pal_kill"),
		destroy:        dlsym(h, "pal_destroy"),
		getLocalReport: dlsym(h, "pal_get_local_report"),
	}
}

func callGetVersion(fn unsafe.Pointer) int { return int(C.palcall_pal_get_version(fn)) }

func callInit(fn unsafe.Pointer, version int, args, logLevel string) int {
	cargs := C.CString(args)
	defer C.free(unsafe.Pointer(cargs))
	clevel := C.CString(logLevel)
	defer C.free(unsafe.Pointer(clevel))
	if version >= 3 {
		// No enclave pool here: no pre-built enclave is handed over.
		return int(C.palcall_pal_init_v3(fn, cargs, clevel, -1, 0))
	}
	return int(C.palcall_pal_init(fn, cargs, clevel))
}

// cStrings is a NULL-terminated char* array in C memory, so that the PAL may
// keep pointers into it for as long as the caller keeps it alive.
type cStrings struct {
	array **C.char
	items []*C.char
}

func newCStrings(list []string) *cStrings {
	n := len(list) + 1
	array := (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	items := unsafe.Slice(array, n)
	for i, s := range list {
		items[i] = C.CString(s)
	}
	return &cStrings{array: array, items: items}
}

func (c *cStrings) free() {
	for _, p := range c.items {
		if p != nil {
			C.free(unsafe.Pointer(p))
		}
	}
	C.free(unsafe.Pointer(c.array))
}

// launch is the C memory one process's PAL calls use; it lives until the
// process's pal_exec has returned, as pal.h promises PALs.
type launch struct {
	path      *C.char
	argv, env *cStrings
	out       *C.int // [0] pid, [1] exit value
}

func newLaunch(path string, argv, env []string) *launch {
	return &launch{
		path: C.CString(path),
		argv: newCStrings(argv),
		env:  newCStrings(env),
		out:  (*C.int)(C.calloc(2, C.size_t(unsafe.Sizeof(C.int(0))))),
	}
}

func (l *launch) free() {
	C.free(unsafe.Pointer(l.path))
	l.argv.free()
	l.env.free()
	C.free(unsafe.Pointer(l.out))
}

func (l *launch) outs() []C.int { return unsafe.Slice(l.out, 2) }

func callExecV1(fn unsafe.Pointer, l *launch, stdio [3]int) (ret, exitCode int) {
	r := C.palcall_pal_exec_v1(fn, l.path, l.argv.array,
		C.int(stdio[0]), C.int(stdio[1]), C.int(stdio[2]), &l.outs()[1])
	return int(r), int(l.outs()[1])
}

func callCreateProcess(fn unsafe.Pointer, l *launch, stdio [3]int) (ret, pid int) {
	r := C.palcall_pal_create_process(fn, l.path, l.argv.array, l.env.array,
		C.int(stdio[0]), C.int(stdio[1]), C.int(stdio[2]), &l.outs()[0])
	return int(r), int(l.outs()[0])
}

func callExec(fn unsafe.Pointer, l *launch, pid int) (ret, exitValue int) {
	r := C.palcall_pal_exec(fn, C.int(pid), &l.outs()[1])
	return int(r), int(l.outs()[1])
}

func callKill(fn unsafe.Pointer, pid, sig int) int {
	return int(C.palcall_pal_kill(fn, C.int(pid), C.int(sig)))
}

func callDestroy(fn unsafe.Pointer) int { return int(C.palcall_pal_destroy(fn)) }

func callGetLocalReport(fn unsafe.Pointer, targetInfo []byte) (ret int, report []byte, err error) {
	if len(targetInfo) > 1<<20 {
		return 0, nil, fmt.Errorf("target info of %d bytes is implausibly large", len(targetInfo))
	}
	// C memory on both sides: the PAL gets no Go pointer it could keep.
	ti := C.CBytes(targetInfo)
	defer C.free(ti)
	rep := C.calloc(1, ReportSize)
	defer C.free(rep)
	replen := (*C.int)(C.malloc(C.size_t(unsafe.Sizeof(C.int(0)))))
	defer C.free(unsafe.Pointer(replen))
	*replen = ReportSize
	r := C.palcall_pal_get_local_report(fn, ti, C.int(len(targetInfo)), rep, replen)
	if r < 0 {
		return int(r), nil, nil
	}
	n := int(*replen)
	if n <= 0 || n > ReportSize {
		return int(r), nil, fmt.Errorf("pal_get_local_report: PAL says it wrote %d bytes into a %d-byte buffer", n, ReportSize)
	}
	return int(r), C.GoBytes(rep, C.int(n)), nil
}
