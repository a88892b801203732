/*
 * reference_pal.c - a reference enclave runtime PAL that needs no TEE.
 *
 * It implements the Enclave Runtime PAL API (../include/pal.h) of the version
 * chosen at build time, with ordinary Linux processes in place of an enclave:
 *
 *     cc -shared -fPIC -fvisibility=hidden -DPAL_VERSION=3 -I../include \
 *        -o libpal-reference-v3.so reference_pal.c
 *
 * It exists so that tests can prove, for every PAL API version, that rune
 * makes the right calls in the right order with the right arguments, and that
 * rune copes with PALs that fail, crash, or are malformed. It is not a TEE:
 * nothing it runs is isolated, and its "report" is fake (see
 * pal_get_local_report).
 *
 * Behaviour
 *  - pal_init records its attributes; args are space-separated options:
 *      trace=PATH      append one line per PAL call to PATH (calls made before
 *                      pal_init, i.e. pal_get_version, are written when the
 *                      file is opened)
 *      fail=CALL:ERRNO make CALL return -ERRNO (e.g. fail=pal_exec:5)
 *      crash=CALL      make CALL dereference NULL (a real SIGSEGV)
 *      hang=CALL       make CALL never return (it waits for signals forever,
 *                      holding the PAL's lock), as a PAL stuck in its TEE does
 *    Anything else is recorded and ignored, as the skeleton PAL does.
 *    The same settings can come from the environment, which also reaches
 *    pal_get_version: REFERENCE_PAL_TRACE, REFERENCE_PAL_FAIL,
 *    REFERENCE_PAL_CRASH, REFERENCE_PAL_HANG; and from the build:
 *    -DREFERENCE_PAL_FAIL='"CALL:ERRNO"', -DREFERENCE_PAL_CRASH='"CALL"',
 *    -DREFERENCE_PAL_HANG='"CALL"'. Init args override the environment,
 *    which overrides the build.
 *  - pal_create_process forks a child that sets up the given stdio and then
 *    waits on a gate; pal_exec opens the gate, the child execve()s path with
 *    argv and env exactly as given, and pal_exec waits for it. So a created
 *    process does not run before pal_exec, as the v2 spec says.
 *    -ENOENT/-EACCES/-ENOEXEC from execve reach the caller: from
 *    pal_create_process when path is missing or not executable, otherwise
 *    from pal_exec.
 *  - v1 pal_exec does both steps in one blocking call; the program inherits
 *    the calling process's environment because v1 passes none.
 *  - Exit status: the exit code for a normal exit, 128+N for death by
 *    signal N.
 *  - pal_kill signals only processes this PAL created and has not reaped
 *    (through a pidfd, so a recycled pid is never hit): pid > 0 one process,
 *    -1 all of them, 0 the oldest one still alive (the entrypoint). Unknown
 *    or finished pid: -ESRCH.
 *  - pal_destroy SIGKILLs whatever is still running and reaps what nobody is
 *    waiting for.
 *  - Build-time variants for loader tests: -DREFERENCE_PAL_REPORTED_VERSION=N
 *    makes pal_get_version return N; -DREFERENCE_PAL_OMIT_<SYMBOL> (e.g.
 *    -DREFERENCE_PAL_OMIT_PAL_KILL) leaves that symbol out.
 *
 * Thread safety: one mutex guards the process table and the trace file;
 * waiting happens outside it. After fork() the child calls only
 * async-signal-safe functions, because the parent (rune's runelet, a Go
 * program) is multi-threaded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAL_VERSION
#error "build with -DPAL_VERSION=1, 2 or 3"
#endif
#define PAL_API_VERSION PAL_VERSION
#include "pal.h"

#ifndef REFERENCE_PAL_REPORTED_VERSION
#define REFERENCE_PAL_REPORTED_VERSION PAL_VERSION
#endif
#ifndef REFERENCE_PAL_FAIL
#define REFERENCE_PAL_FAIL ""
#endif
#ifndef REFERENCE_PAL_CRASH
#define REFERENCE_PAL_CRASH ""
#endif
#ifndef REFERENCE_PAL_HANG
#define REFERENCE_PAL_HANG ""
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum proc_state {
	PROC_CREATED, /* forked, held at the gate */
	PROC_RUNNING, /* gate opened, a pal_exec waits for it */
	PROC_REAPED,  /* waited for; pid may be recycled */
};

struct proc {
	pid_t pid;
	int pidfd;   /* -1 when the kernel has no pidfd_open */
	int gate_fd; /* write end of the gate pipe, -1 once opened */
	int err_fd;  /* read end of the exec-error pipe, -1 once read */
	enum proc_state state;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static int destroyed;
static int trace_fd = -1;
static char *pending;   /* trace lines written before the trace file is known */
static size_t pending_len;
static char fail_call[64];
static int fail_errno;
static char crash_call[64];
static char hang_call[64];
static int config_loaded;
static struct proc *procs;
static size_t nprocs;

/* Written through to crash: the compiler cannot prove it is NULL. */
static int *volatile crash_target;

/* ---- small string buffer (parent side only; uses malloc) ---- */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return; /* trace is best effort; calls do not fail for it */
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_add(b, tmp, (size_t) n < sizeof(tmp) ? (size_t) n : sizeof(tmp) - 1);
}

/*
 * Quote s so that Go's strconv.Unquote returns exactly the original bytes:
 * printable ASCII stays, '"' and '\\' are backslashed, everything else
 * (control bytes, DEL, every byte >= 0x80) becomes \xNN.
 */
static void buf_quote(struct buf *b, const char *s)
{
	if (!s) {
		buf_add(b, "NULL", 4);
		return;
	}
	buf_add(b, "\"", 1);
	for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
		char esc[5];
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char) *c;
			buf_add(b, esc, 2);
		} else if (*c >= 0x20 && *c < 0x7f) {
			buf_add(b, (const char *) c, 1);
		} else {
			snprintf(esc, sizeof(esc), "\\x%02x", *c);
			buf_add(b, esc, 4);
		}
	}
	buf_add(b, "\"", 1);
}

static void buf_quote_list(struct buf *b, const char *const *list)
{
	if (!list) {
		buf_add(b, "NULL", 4);
		return;
	}
	buf_add(b, "[", 1);
	for (size_t i = 0; list[i]; i++) {
		if (i)
			buf_add(b, " ", 1);
		buf_quote(b, list[i]);
	}
	buf_add(b, "]", 1);
}

/* ---- configuration: build, then environment, then init args ---- */

static void set_fail(const char *spec)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t) (colon - spec) : strlen(spec);
	if (n >= sizeof(fail_call))
		n = sizeof(fail_call) - 1;
	memcpy(fail_call, spec, n);
	fail_call[n] = '\0';
	fail_errno = colon ? atoi(colon + 1) : EIO;
	if (fail_errno <= 0)
		fail_errno = EIO;
}

static void set_crash(const char *call)
{
	snprintf(crash_call, sizeof(crash_call), "%s", call);
}

static void set_hang(const char *call)
{
	snprintf(hang_call, sizeof(hang_call), "%s", call);
}

static int open_trace(const char *path);

/* Called with lock held. */
static void load_config(void)
{
	if (config_loaded)
		return;
	config_loaded = 1;
	if (REFERENCE_PAL_FAIL[0])
		set_fail(REFERENCE_PAL_FAIL);
	if (REFERENCE_PAL_CRASH[0])
		set_crash(REFERENCE_PAL_CRASH);
	if (REFERENCE_PAL_HANG[0])
		set_hang(REFERENCE_PAL_HANG);
	const char *v = getenv("REFERENCE_PAL_FAIL");
	if (v && *v)
		set_fail(v);
	v = getenv("REFERENCE_PAL_CRASH");
	if (v && *v)
		set_crash(v);
	v = getenv("REFERENCE_PAL_HANG");
	if (v && *v)
		set_hang(v);
	v = getenv("REFERENCE_PAL_TRACE");
	if (v && *v)
		open_trace(v); /* best effort: pal_get_version has no way to say */
}

/* ---- trace ---- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t) w;
	}
	return 0;
}

/* Called with lock held. Returns 0 or -errno. */
static int open_trace(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (trace_fd >= 0)
		close(trace_fd);
	trace_fd = fd;
	if (pending_len) {
		write_all(trace_fd, pending, pending_len);
		free(pending);
		pending = NULL;
		pending_len = 0;
	}
	return 0;
}

/* Record one finished line (b, without newline). Called with lock held. */
static void trace_line(struct buf *b)
{
	buf_add(b, "\n", 1);
	if (!b->p)
		return;
	if (trace_fd >= 0) {
		write_all(trace_fd, b->p, b->len);
	} else {
		char *p = realloc(pending, pending_len + b->len);
		if (p) {
			memcpy(p + pending_len, b->p, b->len);
			pending = p;
			pending_len += b->len;
		}
	}
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/*
 * Record the call and apply injected faults: returns 0 to proceed or the
 * -errno the call must return. Called with lock held.
 */
static int enter(struct buf *b)
{
	char name[64];
	size_t n = strcspn(b->p ? b->p : "", " ");
	if (n >= sizeof(name))
		n = sizeof(name) - 1;
	memcpy(name, b->p ? b->p : "", n);
	name[n] = '\0';
	trace_line(b);
	if (crash_call[0] && !strcmp(name, crash_call))
		*crash_target = 1; /* SIGSEGV, on purpose */
	if (hang_call[0] && !strcmp(name, hang_call))
		for (;;)
			pause(); /* stuck, on purpose: only SIGKILL ends it */
	if (fail_call[0] && !strcmp(name, fail_call))
		return -fail_errno;
	return 0;
}

/* ---- process table (lock held) ---- */

static __attribute__((unused)) struct proc *find_proc(pid_t pid)
{
	for (size_t i = 0; i < nprocs; i++)
		if (procs[i].pid == pid && procs[i].state != PROC_REAPED)
			return &procs[i];
	return NULL;
}

static struct proc *add_proc(void)
{
	struct proc *p = realloc(procs, (nprocs + 1) * sizeof(*procs));
	if (!p)
		return NULL;
	procs = p;
	return &procs[nprocs++];
}

static int signal_proc(struct proc *p, int sig)
{
	long r;
	if (p->pidfd >= 0)
		r = syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
	else
		r = kill(p->pid, sig);
	return r < 0 ? -errno : 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* ---- child side: async-signal-safe only ---- */

static void child_fail(int err_fd, int err)
{
	int e = err;
	(void) !write(err_fd, &e, sizeof(e));
	_exit(127);
}

/*
 * Runs in the forked child: give it the stdio, wait at the gate (if any),
 * execve. Never returns.
 */
static void child_exec(const char *path, char *const argv[], char *const envp[],
		       const struct pal_stdio_fds *stdio, int gate_fd,
		       int gate_peer, int err_fd)
{
	/* Our copy of the gate's other end would keep the gate from ever
	 * reporting that the PAL went away. */
	if (gate_peer >= 0)
		close(gate_peer);

	/*
	 * The parent forked with every signal blocked, so no handler of the
	 * runelet (Go's, which cannot run in this copy) has run here. Give every
	 * signal its default action, then unblock: a signal sent to a gated
	 * child now does what it will do to the program.
	 */
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(s, &sa, NULL); /* fails harmlessly for glibc-reserved ones */
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* Move the three fds above 2 first so that dup2 cannot clobber one. */
	int want[3] = { stdio->stdin, stdio->stdout, stdio->stderr };
	int tmp[3];
	for (int i = 0; i < 3; i++) {
		if (want[i] < 0)
			want[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (want[i] < 0)
			child_fail(err_fd, errno);
		tmp[i] = fcntl(want[i], F_DUPFD_CLOEXEC, 3);
		if (tmp[i] < 0)
			child_fail(err_fd, errno);
	}
	for (int i = 0; i < 3; i++)
		if (dup2(tmp[i], i) < 0)
			child_fail(err_fd, errno);

	/* Nothing of the runelet's but stdio may reach the program. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		long max = sysconf(_SC_OPEN_MAX);
		for (long fd = 3; fd < max; fd++)
			fcntl((int) fd, F_SETFD, FD_CLOEXEC);
	}

	if (gate_fd >= 0) {
		char c;
		ssize_t r;
		do {
			r = read(gate_fd, &c, 1);
		} while (r < 0 && errno == EINTR);
		if (r != 1)
			_exit(127); /* the PAL went away without running us */
	}
	execve(path, argv, envp);
	child_fail(err_fd, errno);
}

/* Read the exec-error pipe: 0 if execve succeeded, else -errno. */
static int read_exec_error(int err_fd)
{
	int e;
	ssize_t r;
	do {
		r = read(err_fd, &e, sizeof(e));
	} while (r < 0 && errno == EINTR);
	return r == (ssize_t) sizeof(e) ? -e : 0;
}

static int wait_status(pid_t pid, int *exit_value)
{
	int status;
	pid_t r;
	do {
		r = waitpid(pid, &status, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (WIFEXITED(status))
		*exit_value = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		*exit_value = 128 + WTERMSIG(status);
	else
		*exit_value = 255;
	return 0;
}

static void mark_reaped(pid_t pid)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nprocs; i++) {
		if (procs[i].pid == pid && procs[i].state != PROC_REAPED) {
			procs[i].state = PROC_REAPED;
			close_fd(&procs[i].pidfd);
			close_fd(&procs[i].gate_fd);
			close_fd(&procs[i].err_fd);
			break;
		}
	}
	pthread_mutex_unlock(&lock);
}

/*
 * Fork a child held at a gate (gated) or running at once. Lock held.
 * On success returns 0 and fills *out.
 */
static int spawn(const char *path, char *const argv[], char *const envp[],
		 const struct pal_stdio_fds *stdio, int gated, struct proc *out)
{
	int gate[2] = { -1, -1 }, err[2];
	if (pipe2(err, O_CLOEXEC) < 0)
		return -errno;
	/* A socket, not a pipe: opening the gate of a child that already died
	 * must give EPIPE, not a SIGPIPE in the runelet (MSG_NOSIGNAL). */
	if (gated && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gate) < 0) {
		int e = -errno;
		close(err[0]);
		close(err[1]);
		return e;
	}
	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	pid_t pid = fork();
	int fork_errno = errno;
	if (pid != 0)
		pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (pid < 0) {
		int e = -fork_errno;
		close(err[0]);
		close(err[1]);
		if (gated) {
			close(gate[0]);
			close(gate[1]);
		}
		return e;
	}
	if (pid == 0)
		child_exec(path, argv, envp, stdio, gated ? gate[0] : -1,
			   gated ? gate[1] : -1, err[1]);

	close(err[1]);
	if (gated)
		close(gate[0]);
	out->pid = pid;
	out->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
	if (out->pidfd < 0)
		out->pidfd = -1;
	out->gate_fd = gated ? gate[1] : -1;
	out->err_fd = err[0];
	out->state = gated ? PROC_CREATED : PROC_RUNNING;
	return 0;
}

/* ---- the PAL API ---- */

#ifndef REFERENCE_PAL_OMIT_PAL_GET_VERSION
PAL_EXPORT int pal_get_version(void)
{
	struct buf b = { 0 };
	pthread_mutex_lock(&lock);
	load_config();
	buf_printf(&b, "pal_get_version");
	int rc = enter(&b);
	pthread_mutex_unlock(&lock);
	return rc ? rc : REFERENCE_PAL_REPORTED_VERSION;
}
#endif

/* Returns 0 or -errno (the trace file cannot be opened). */
static int parse_init_args(const char *args)
{
	int rc = 0;
	char *copy = strdup(args ? args : "");
	if (!copy)
		return -ENOMEM;
	char *save = NULL;
	for (char *opt = strtok_r(copy, " ", &save); opt;
	     opt = strtok_r(NULL, " ", &save)) {
		if (!strncmp(opt, "trace=", 6))
			rc = open_trace(opt + 6);
		else if (!strncmp(opt, "fail=", 5))
			set_fail(opt + 5);
		else if (!strncmp(opt, "crash=", 6))
			set_crash(opt + 6);
		else if (!strncmp(opt, "hang=", 5))
			set_hang(opt + 5);
		/* other options are the enclave runtime's business; ignored */
		if (rc)
			break;
	}
	free(copy);
	return rc;
}

static int do_init(const struct pal_attr_t *attr, int fd, uint64_t addr,
		   int has_v3)
{
	struct buf b = { 0 };
	pthread_mutex_lock(&lock);
	load_config();
	int arg_rc = attr ? parse_init_args(attr->args) : 0;
	buf_printf(&b, "pal_init args=");
	buf_quote(&b, attr ? attr->args : NULL);
	buf_printf(&b, " log_level=");
	buf_quote(&b, attr ? attr->log_level : NULL);
	if (has_v3)
		buf_printf(&b, " fd=%d addr=0x%llx", fd,
			   (unsigned long long) addr);
	int rc = enter(&b);
	if (rc == 0)
		rc = arg_rc;
	if (rc == 0) {
		if (!attr || !attr->args || !attr->log_level)
			rc = -EINVAL;
		else if (initialized || destroyed)
			rc = -EEXIST;
		else
			initialized = 1;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

#ifndef REFERENCE_PAL_OMIT_PAL_INIT
#if PAL_VERSION >= 3
PAL_EXPORT int pal_init(const struct pal_attr_v3_t *attr)
{
	return do_init(attr ? &attr->attr_v1 : NULL, attr ? attr->fd : -1,
		       attr ? attr->addr : 0, 1);
}
#else
PAL_EXPORT int pal_init(const struct pal_attr_t *attr)
{
	return do_init(attr, 0, 0, 0);
}
#endif
#endif

static int usable(void)
{
	return initialized && !destroyed;
}

#if PAL_VERSION == 1
#ifndef REFERENCE_PAL_OMIT_PAL_EXEC
extern char **environ;

PAL_EXPORT int pal_exec(const char *path, const char *argv[],
			const struct pal_stdio_fds *stdio, int *exit_code)
{
	struct buf b = { 0 };
	struct proc p;
	pthread_mutex_lock(&lock);
	buf_printf(&b, "pal_exec path=");
	buf_quote(&b, path);
	buf_printf(&b, " argv=");
	buf_quote_list(&b, argv);
	if (stdio)
		buf_printf(&b, " stdio=%d,%d,%d", stdio->stdin, stdio->stdout,
			   stdio->stderr);
	int rc = enter(&b);
	if (rc == 0 && (!path || !argv || !stdio || !exit_code))
		rc = -EINVAL;
	if (rc == 0 && !usable())
		rc = -EINVAL;
	struct proc *slot = NULL;
	if (rc == 0) {
		rc = spawn(path, (char *const *) argv, environ, stdio, 0, &p);
		if (rc == 0) {
			slot = add_proc();
			if (slot)
				*slot = p;
		}
	}
	pthread_mutex_unlock(&lock);
	if (rc)
		return rc;

	rc = read_exec_error(p.err_fd);
	int status_rc = wait_status(p.pid, exit_code);
	if (slot)
		mark_reaped(p.pid);
	else {
		close(p.err_fd);
		if (p.pidfd >= 0)
			close(p.pidfd);
	}
	return rc ? rc : status_rc;
}
#endif
#else /* PAL_VERSION >= 2 */

#ifndef REFERENCE_PAL_OMIT_PAL_CREATE_PROCESS
PAL_EXPORT int pal_create_process(struct pal_create_process_args *args)
{
	static const char *const no_env[] = { NULL };
	struct buf b = { 0 };
	pthread_mutex_lock(&lock);
	buf_printf(&b, "pal_create_process path=");
	buf_quote(&b, args ? args->path : NULL);
	buf_printf(&b, " argv=");
	buf_quote_list(&b, args ? args->argv : NULL);
	buf_printf(&b, " env=");
	buf_quote_list(&b, args ? args->env : NULL);
	if (args && args->stdio)
		buf_printf(&b, " stdio=%d,%d,%d", args->stdio->stdin,
			   args->stdio->stdout, args->stdio->stderr);
	int rc = enter(&b);
	if (rc == 0 && (!args || !args->path || !args->argv || !args->stdio ||
			!args->pid))
		rc = -EINVAL;
	if (rc == 0 && !usable())
		rc = -EINVAL;
	/* Report a missing or non-executable program here, not at pal_exec. */
	if (rc == 0 && access(args->path, X_OK) < 0)
		rc = -errno;
	if (rc == 0) {
		struct proc p;
		const char *const *env = args->env ? args->env : no_env;
		rc = spawn(args->path, (char *const *) args->argv,
			   (char *const *) env, args->stdio, 1, &p);
		if (rc == 0) {
			struct proc *slot = add_proc();
			if (slot) {
				*slot = p;
				*args->pid = p.pid;
			} else {
				signal_proc(&p, SIGKILL);
				close_fd(&p.gate_fd);
				close_fd(&p.err_fd);
				close_fd(&p.pidfd);
				waitpid(p.pid, NULL, 0);
				rc = -ENOMEM;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	return rc;
}
#endif

#ifndef REFERENCE_PAL_OMIT_PAL_EXEC
PAL_EXPORT int pal_exec(struct pal_exec_args *args)
{
	struct buf b = { 0 };
	pthread_mutex_lock(&lock);
	buf_printf(&b, "pal_exec pid=%d", args ? args->pid : 0);
	int rc = enter(&b);
	if (rc == 0 && (!args || !args->exit_value))
		rc = -EINVAL;
	if (rc == 0 && !usable())
		rc = -EINVAL;
	struct proc *p = NULL;
	int err_fd = -1;
	pid_t pid = 0;
	if (rc == 0) {
		p = find_proc(args->pid);
		if (!p)
			rc = -ESRCH;
		else if (p->state != PROC_CREATED)
			rc = -EBUSY; /* someone already runs it */
	}
	if (rc == 0) {
		p->state = PROC_RUNNING;
		pid = p->pid;
		err_fd = p->err_fd;
		p->err_fd = -1; /* ours now */
		/* Open the gate. */
		char go = 1;
		ssize_t w;
		do {
			w = send(p->gate_fd, &go, 1, MSG_NOSIGNAL);
		} while (w < 0 && errno == EINTR);
		/* w < 0: the child is already gone; waiting tells how. */
		close_fd(&p->gate_fd);
	}
	pthread_mutex_unlock(&lock);
	if (!pid)
		return rc;

	int exec_rc = read_exec_error(err_fd);
	close(err_fd);
	int status_rc = wait_status(pid, args->exit_value);
	mark_reaped(pid);
	if (exec_rc)
		return exec_rc;
	return status_rc;
}
#endif

#ifndef REFERENCE_PAL_OMIT_PAL_KILL
PAL_EXPORT int pal_kill(int pid, int sig)
{
	struct buf b = { 0 };
	pthread_mutex_lock(&lock);
	buf_printf(&b, "pal_kill pid=%d sig=%d", pid, sig);
	int rc = enter(&b);
	if (rc == 0 && (sig < 0 || sig >= NSIG || pid < -1))
		rc = -EINVAL;
	if (rc == 0 && !usable())
		rc = -EINVAL;
	if (rc == 0) {
		if (pid > 0) {
			struct proc *p = find_proc(pid);
			rc = p ? signal_proc(p, sig) : -ESRCH;
		} else {
			int hit = 0;
			rc = -ESRCH;
			for (size_t i = 0; i < nprocs; i++) {
				if (procs[i].state == PROC_REAPED)
					continue;
				int r = signal_proc(&procs[i], sig);
				if (!hit || r == 0)
					rc = r;
				hit = 1;
				if (pid == 0)
					break; /* the oldest live one only */
			}
		}
	}
	pthread_mutex_unlock(&lock);
	return rc;
}
#endif
#endif /* PAL_VERSION >= 2 */

#if PAL_VERSION >= 3 && !defined(REFERENCE_PAL_OMIT_PAL_GET_LOCAL_REPORT)
/*
 * A SIMULATED SGX REPORT. Nothing here is measured, keyed or signed by
 * hardware: the layout is that of an SGX REPORT (432 bytes: a 384-byte body,
 * KEYID, MAC) so that code paths can be exercised, but every identity field
 * is a fixed ASCII label saying it is simulated, the DEBUG attribute is set,
 * and the MAC is a non-cryptographic checksum of the TARGETINFO. A real
 * verifier rejects it (no valid MAC can be checked, no quoting enclave signs
 * it). It is deterministic: the same TARGETINFO gives the same bytes.
 */
struct sim_report {
	uint8_t cpu_svn[16];
	uint32_t misc_select;
	uint8_t reserved1[12];
	uint8_t isv_ext_prod_id[16];
	uint64_t attributes_flags;
	uint64_t attributes_xfrm;
	uint8_t mr_enclave[32];
	uint8_t reserved2[32];
	uint8_t mr_signer[32];
	uint8_t reserved3[32];
	uint8_t config_id[64];
	uint16_t isv_prod_id;
	uint16_t isv_svn;
	uint16_t config_svn;
	uint8_t reserved4[42];
	uint8_t isv_family_id[16];
	uint8_t report_data[64];
	uint8_t key_id[32];
	uint8_t mac[16];
} __attribute__((packed));
_Static_assert(sizeof(struct sim_report) == PAL_SGX_REPORT_SIZE,
	       "SGX REPORT is 432 bytes");

static void label(uint8_t *dst, size_t n, const char *text)
{
	size_t l = strlen(text);
	memset(dst, ' ', n);
	memcpy(dst, text, l < n ? l : n);
}

PAL_EXPORT int pal_get_local_report(void *targetinfo, int targetinfo_len,
				    void *report, int *report_len)
{
	struct buf b = { 0 };
	pthread_mutex_lock(&lock);
	buf_printf(&b, "pal_get_local_report targetinfo_len=%d report_len=%d",
		   targetinfo_len, report_len ? *report_len : -1);
	int rc = enter(&b);
	if (rc == 0 && !usable())
		rc = -EINVAL;
	pthread_mutex_unlock(&lock);
	if (rc)
		return rc;
	if (!targetinfo || targetinfo_len != PAL_SGX_TARGET_INFO_SIZE)
		return -EINVAL;
	if (!report || !report_len || *report_len < PAL_SGX_REPORT_SIZE) {
		if (report_len)
			*report_len = PAL_SGX_REPORT_SIZE;
		return -EINVAL;
	}

	struct sim_report r;
	memset(&r, 0, sizeof(r));
	r.attributes_flags = 0x7; /* INIT | DEBUG | MODE64BIT */
	r.attributes_xfrm = 0x3;  /* x87 | SSE */
	label(r.mr_enclave, sizeof(r.mr_enclave), "SIMULATED reference PAL no TEE");
	label(r.mr_signer, sizeof(r.mr_signer), "SIMULATED reference PAL signer");
	label(r.report_data, sizeof(r.report_data),
	      "SIMULATED REPORT from the inclavare-go reference PAL: not a TEE");
	r.isv_prod_id = PAL_VERSION;
	label(r.key_id, sizeof(r.key_id), "SIMULATED-NO-KEY");
	/* FNV-1a over the TARGETINFO, twice with different seeds: binds the
	 * fake report to its input without pretending to be a MAC. */
	const uint8_t *ti = targetinfo;
	for (int half = 0; half < 2; half++) {
		uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t) half;
		for (int i = 0; i < targetinfo_len; i++) {
			h ^= ti[i];
			h *= 0x100000001b3ULL;
		}
		memcpy(r.mac + 8 * half, &h, 8);
	}
	memcpy(report, &r, sizeof(r));
	*report_len = PAL_SGX_REPORT_SIZE;
	return 0;
}
#endif

#ifndef REFERENCE_PAL_OMIT_PAL_DESTROY
PAL_EXPORT int pal_destroy(void)
{
	struct buf b = { 0 };
	pid_t orphans[64];
	size_t norphans = 0;
	pthread_mutex_lock(&lock);
	buf_printf(&b, "pal_destroy");
	int rc = enter(&b);
	if (rc == 0 && !usable())
		rc = -EINVAL;
	if (rc == 0) {
		destroyed = 1;
		for (size_t i = 0; i < nprocs; i++) {
			struct proc *p = &procs[i];
			if (p->state == PROC_REAPED)
				continue;
			signal_proc(p, SIGKILL);
			/* Nobody waits for a process never handed to pal_exec. */
			if (p->state == PROC_CREATED && norphans < 64) {
				close_fd(&p->gate_fd);
				orphans[norphans++] = p->pid;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	for (size_t i = 0; i < norphans; i++) {
		int ignored;
		wait_status(orphans[i], &ignored);
		mark_reaped(orphans[i]);
	}
	return rc;
}
#endif
