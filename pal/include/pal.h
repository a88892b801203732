/*
 * pal.h - the Enclave Runtime PAL API (v1, v2, v3) of Inclavare Containers.
 *
 * An enclave runtime (a library OS such as Occlum, a WebAssembly runtime such
 * as WAMR, or anything else) plugs into rune as a shared library, the PAL
 * (Platform Abstraction Layer), that exports the C functions declared here.
 * rune's init-runelet dlopen()s the library inside the container and drives
 * it through these functions.
 *
 * This header states the ABI exactly as Inclavare Containers' rune calls it
 * (rune/libenclave/internal/runtime/pal/api_v{1,2,3}_linux.go and the
 * skeleton PAL's liberpal-skeleton.h). Where the prose specs (spec_v1.md,
 * spec_v2.md, pal_programming_guide.md) disagree with what rune passes, this
 * header follows what rune passes, and says so at the spot.
 *
 * Using it
 * --------
 * A PAL defines PAL_API_VERSION to 1, 2 or 3 before including this file; the
 * prototypes of that version are then declared, so the compiler checks the
 * PAL's definitions against the ABI. Without PAL_API_VERSION only the types
 * are declared (that is how a loader such as rune uses the header).
 *
 *     #define PAL_API_VERSION 3
 *     #include "pal.h"
 *     PAL_EXPORT int pal_get_version(void) { return 3; }
 *     ...
 *
 * Versions and call order
 * -----------------------
 *   v1: [pal_get_version] -> pal_init -> pal_exec ... -> pal_destroy
 *       pal_get_version is optional in v1: a PAL without it is v1.
 *       pal_exec runs one program to completion (it blocks).
 *       v1 has no pal_kill, no environment for the program, no process id.
 *   v2: pal_get_version -> pal_init -> (pal_create_process -> pal_exec)... ->
 *       pal_destroy; pal_kill at any time between pal_init and pal_destroy,
 *       from another thread while pal_exec blocks.
 *   v3: v2, with pal_init taking struct pal_attr_v3_t, plus
 *       pal_get_local_report (SGX local attestation) at any time after
 *       pal_init.
 * rune refuses a PAL whose pal_get_version returns more than
 * PAL_API_VERSION_MAX. rune calls pal_init once, pal_destroy once, and may
 * call pal_create_process/pal_exec several times (the entrypoint and every
 * `rune exec`), concurrently: several pal_exec calls may block at once, on
 * different threads, while pal_kill or pal_get_local_report is called from
 * yet another thread. A PAL must be thread-safe.
 *
 * Return values
 * -------------
 * Every function except pal_get_version returns 0 on success and a negative
 * errno value (-EINVAL, -ENOENT, ...) on failure. rune treats any value < 0 as
 * failure and reports it with its errno text; values > 0 count as success.
 * pal_get_version returns the version (> 0).
 *
 * Exit status
 * -----------
 * pal_exec hands back the program's exit status through an int pointer; rune
 * uses that number as the container's (or `rune exec`'s) exit code unchanged.
 * A PAL should report a normal exit as its exit code (0-255) and a death by
 * signal N as 128+N, as shells do. (The original skeleton PAL reported
 * WEXITSTATUS() even for a signalled child, which is 0; rune did not
 * reinterpret it either way.)
 *
 * Strings and arrays
 * ------------------
 * All strings are NUL-terminated. argv and env are NULL-terminated arrays.
 * The memory rune passes stays valid only for the duration of the call,
 * except for pal_create_process's path/argv/env, which rune keeps valid until
 * the matching pal_exec returns.
 *
 * Layout
 * ------
 * Natural C alignment; no packing. spec_v2.md writes
 * __attribute__((packed)) on pal_create_process_args and pal_exec_args and
 * flexible arrays for argv/env, but rune never passed packed structures or
 * arrays: it passed the naturally aligned structures below, with pointers for
 * argv and env (so pal_exec_args.exit_value sits at offset 8 on LP64, not 4).
 * The static assertions at the end pin the LP64 layout.
 */
#ifndef INCLAVARE_PAL_H
#define INCLAVARE_PAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The highest PAL API version rune supports. */
#define PAL_API_VERSION_MAX 3

/* Sizes of Intel SGX structures exchanged by pal_get_local_report (v3). */
#define PAL_SGX_TARGET_INFO_SIZE 512 /* sgx_target_info_t, TARGETINFO */
#define PAL_SGX_REPORT_SIZE 432      /* sgx_report_t, REPORT */

/* Marks a PAL entry point as exported even under -fvisibility=hidden. */
#define PAL_EXPORT __attribute__((visibility("default")))

/*
 * pal_init's attributes in v1 and v2 (the skeleton calls this pal_attr_v1_t).
 *
 * args: ENCLAVE_RUNTIME_ARGS (or the enclave.runtime.args annotation) with
 *       every comma replaced by a space: "a,b=c" arrives as "a b=c". Never
 *       NULL; "" when unset.
 * log_level: ENCLAVE_RUNTIME_LOGLEVEL (or enclave.runtime.loglevel), one of
 *       "trace", "debug", "info", "warning", "error", "fatal", "panic", "off";
 *       "info" when unset.
 */
struct pal_attr_t {
	const char *args;
	const char *log_level;
};
typedef struct pal_attr_t pal_attr_v1_t;

/*
 * pal_init's attributes in v3: the v1 attributes followed by a pre-built
 * enclave handed over by the enclave pool manager (EPM) of the original
 * rune. fd is the enclave device file descriptor and addr the enclave's
 * base address; when no enclave is handed over, fd is -1 and addr is 0
 * (this rune has no EPM and always passes -1 and 0).
 */
struct pal_attr_v3_t {
	struct pal_attr_t attr_v1;
	int fd;
	uint64_t addr;
};
typedef struct pal_attr_v3_t pal_attr_v3_t;

/*
 * The program's standard streams, as file descriptors open in the calling
 * process. They are the runelet's duplicates; the PAL may dup() them and
 * must not assume they stay open after the call that received them returns
 * (pal_exec in v1, pal_exec for the process in v2/v3).
 *
 * The member names shadow the <stdio.h> macros stdin/stdout/stderr; glibc
 * defines those macros as themselves, so the names work, as in the skeleton.
 */
struct pal_stdio_fds {
	int stdin, stdout, stderr;
};
typedef struct pal_stdio_fds pal_stdio_fds;

/*
 * pal_create_process's argument (v2, v3).
 *
 * path: the program, as the enclave runtime names it (for a library OS a
 *       path inside its own file system; rune resolves argv[0] against PATH
 *       when that finds a file in the container, and passes argv[0] as is
 *       otherwise).
 * argv: the program's arguments, argv[0] first, NULL-terminated.
 * env:  the program's environment, "NAME=value" strings, NULL-terminated.
 * stdio: the program's standard streams.
 * pid:  out: on success, the id of the new process; pal_exec and pal_kill
 *       name the process by it.
 */
struct pal_create_process_args {
	const char *path;
	const char **argv;
	const char **env;
	const struct pal_stdio_fds *stdio;
	int *pid;
};
typedef struct pal_create_process_args pal_create_process_args;

/*
 * pal_exec's argument (v2, v3).
 *
 * pid: a process returned by pal_create_process.
 * exit_value: out: the process's exit status when pal_exec returns 0.
 */
struct pal_exec_args {
	int pid;
	int *exit_value;
};
typedef struct pal_exec_args pal_exec_args;

#ifdef PAL_API_VERSION
#if PAL_API_VERSION < 1 || PAL_API_VERSION > PAL_API_VERSION_MAX
#error "PAL_API_VERSION must be 1, 2 or 3"
#endif

/*
 * pal_get_version: the PAL API version this library implements. Optional in
 * v1 (absent means 1), required from v2 on. Called once, before pal_init.
 */
PAL_EXPORT int pal_get_version(void);

/*
 * pal_destroy: tear the enclave down. Called once, after the container's
 * entrypoint has exited; other programs (from `rune exec`) may still run and
 * should be terminated. 0 or -errno (-ENOSYS when unsupported).
 */
PAL_EXPORT int pal_destroy(void);

#if PAL_API_VERSION == 1
/*
 * pal_init (v1): create the enclave. 0, -ENOENT (bad instance path), or a
 * runtime-specific -errno.
 */
PAL_EXPORT int pal_init(const struct pal_attr_t *attr);

/*
 * pal_exec (v1): run path with argv (argv[0] first, NULL-terminated) and the
 * given stdio to completion, then store its exit status in *exit_code.
 * v1 passes no environment. Blocks. 0, or -ENOENT, -EACCES, -ENOEXEC,
 * -ENOMEM, -EINVAL.
 */
PAL_EXPORT int pal_exec(const char *path, const char *argv[],
			const struct pal_stdio_fds *stdio, int *exit_code);
#else
/*
 * pal_init (v2: struct pal_attr_t; v3: struct pal_attr_v3_t): create the
 * enclave. 0, -EINVAL, -ENOSYS or a runtime-specific -errno.
 */
#if PAL_API_VERSION == 2
PAL_EXPORT int pal_init(const struct pal_attr_t *attr);
#else
PAL_EXPORT int pal_init(const struct pal_attr_v3_t *attr);
#endif

/*
 * pal_create_process (v2, v3): create a process but do not run it yet;
 * pal_exec runs it. Stores the process id in *args->pid. 0, -EINVAL,
 * -ENOSYS, or e.g. -ENOENT when path does not exist.
 */
PAL_EXPORT int pal_create_process(struct pal_create_process_args *args);

/*
 * pal_exec (v2, v3): run the process args->pid and block until it exits;
 * store its exit status in *args->exit_value. 0, -EINVAL, -ENOSYS.
 */
PAL_EXPORT int pal_exec(struct pal_exec_args *args);

/*
 * pal_kill (v2, v3): send signal sig to process pid: pid > 0 is a process
 * from pal_create_process, -1 means every process of the enclave, 0 the
 * "current" process (the runtime defines which). 0, -EINVAL, -ENOSYS.
 * Argument order is (pid, sig). pal_programming_guide.md also sketches a
 * struct pal_kill_args {pid, sig} variant; rune never called that form.
 */
PAL_EXPORT int pal_kill(int pid, int sig);
#endif

#if PAL_API_VERSION >= 3
/*
 * pal_get_local_report (v3): produce an SGX REPORT of the enclave targeted at
 * the enclave described by targetinfo (normally the quoting enclave), for
 * local and remote attestation.
 *
 * targetinfo/targetinfo_len: a TARGETINFO, PAL_SGX_TARGET_INFO_SIZE bytes.
 * report: out: the REPORT.
 * report_len: in: the size of report (rune passes PAL_SGX_REPORT_SIZE);
 *             out: the number of bytes written.
 * 0 or -errno (-EINVAL for a wrong size).
 */
PAL_EXPORT int pal_get_local_report(void *targetinfo, int targetinfo_len,
				    void *report, int *report_len);
#endif
#endif /* PAL_API_VERSION */

/* The layout rune relies on, on LP64 targets (x86_64, aarch64). */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define PAL_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define PAL_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
#if defined(__LP64__) && defined(PAL_STATIC_ASSERT)
#include <stddef.h>
PAL_STATIC_ASSERT(sizeof(struct pal_attr_t) == 16, "pal_attr_t size");
PAL_STATIC_ASSERT(offsetof(struct pal_attr_t, args) == 0, "pal_attr_t.args");
PAL_STATIC_ASSERT(offsetof(struct pal_attr_t, log_level) == 8, "pal_attr_t.log_level");

PAL_STATIC_ASSERT(sizeof(struct pal_attr_v3_t) == 32, "pal_attr_v3_t size");
PAL_STATIC_ASSERT(offsetof(struct pal_attr_v3_t, attr_v1) == 0, "pal_attr_v3_t.attr_v1");
PAL_STATIC_ASSERT(offsetof(struct pal_attr_v3_t, fd) == 16, "pal_attr_v3_t.fd");
PAL_STATIC_ASSERT(offsetof(struct pal_attr_v3_t, addr) == 24, "pal_attr_v3_t.addr");

PAL_STATIC_ASSERT(sizeof(struct pal_stdio_fds) == 12, "pal_stdio_fds size");
PAL_STATIC_ASSERT(offsetof(struct pal_stdio_fds, stdin) == 0, "pal_stdio_fds.stdin");
PAL_STATIC_ASSERT(offsetof(struct pal_stdio_fds, stdout) == 4, "pal_stdio_fds.stdout");
PAL_STATIC_ASSERT(offsetof(struct pal_stdio_fds, stderr) == 8, "pal_stdio_fds.stderr");

PAL_STATIC_ASSERT(sizeof(struct pal_create_process_args) == 40, "pal_create_process_args size");
PAL_STATIC_ASSERT(offsetof(struct pal_create_process_args, path) == 0, "pal_create_process_args.path");
PAL_STATIC_ASSERT(offsetof(struct pal_create_process_args, argv) == 8, "pal_create_process_args.argv");
PAL_STATIC_ASSERT(offsetof(struct pal_create_process_args, env) == 16, "pal_create_process_args.env");
PAL_STATIC_ASSERT(offsetof(struct pal_create_process_args, stdio) == 24, "pal_create_process_args.stdio");
PAL_STATIC_ASSERT(offsetof(struct pal_create_process_args, pid) == 32, "pal_create_process_args.pid");

PAL_STATIC_ASSERT(sizeof(struct pal_exec_args) == 16, "pal_exec_args size");
PAL_STATIC_ASSERT(offsetof(struct pal_exec_args, pid) == 0, "pal_exec_args.pid");
PAL_STATIC_ASSERT(offsetof(struct pal_exec_args, exit_value) == 8, "pal_exec_args.exit_value");
#endif

#ifdef __cplusplus
}
#endif

#endif /* INCLAVARE_PAL_H */
