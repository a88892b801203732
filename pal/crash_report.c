// One-line reports of a crash inside a PAL call (see ReportCrashes in crash_report.go).
//
// A PAL runs in the runelet's process, so a fault in it kills the runelet. The Go runtime would
// print its crash report, goroutine traces and all, on fd 2, which is the workload's stderr once
// the workload runs. This handler, installed in front of the Go runtime's for the synchronous fault
// signals, recognises a fault raised while the faulting thread is inside a PAL call (the
// trampolines in cgo.go record which, per thread) and instead writes one line naming the call and
// the signal, then lets the signal kill the process (no core dump). Any other fault is forwarded to
// the Go runtime's handler, as the os/signal documentation asks of non-Go handlers.
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

// The PAL call the calling thread is in, or NULL; set and cleared by the trampolines in cgo.go.
__thread const char *volatile inclavare_pal_call;

static const int fault_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP };
#define NFAULT ((int) (sizeof(fault_signals) / sizeof(fault_signals[0])))
static struct sigaction go_action[NFAULT];
static char prefix[128];

static const char *signal_text(int sig, const char **name)
{
	switch (sig) {
	case SIGSEGV: *name = "SIGSEGV"; return "segmentation violation";
	case SIGBUS: *name = "SIGBUS"; return "bus error";
	case SIGFPE: *name = "SIGFPE"; return "floating-point exception";
	case SIGILL: *name = "SIGILL"; return "illegal instruction";
	case SIGTRAP: *name = "SIGTRAP"; return "trace trap";
	}
	*name = "SIG?";
	return "signal";
}

// put appends s to buf (size n) at *len; async-signal-safe.
static void put(char *buf, size_t n, size_t *len, const char *s)
{
	while (*s && *len + 1 < n)
		buf[(*len)++] = *s++;
}

static void fault_handler(int sig, siginfo_t *info, void *uctx)
{
	int i;
	for (i = 0; i < NFAULT && fault_signals[i] != sig; i++)
		;
	const char *call = inclavare_pal_call;
	// si_code > 0: raised by the kernel for this thread's own fault, not sent by kill.
	if (i == NFAULT)
		return;
	if (call == NULL || info == NULL || info->si_code <= 0) {
		struct sigaction *go = &go_action[i];
		if (go->sa_flags & SA_SIGINFO) {
			if (go->sa_sigaction)
				go->sa_sigaction(sig, info, uctx);
		} else if (go->sa_handler != SIG_DFL && go->sa_handler != SIG_IGN) {
			go->sa_handler(sig);
		}
		return;
	}
	const char *name;
	const char *text = signal_text(sig, &name);
	char line[512];
	size_t len = 0;
	put(line, sizeof(line), &len, prefix);
	put(line, sizeof(line), &len, "enclave runtime crashed in ");
	put(line, sizeof(line), &len, call);
	put(line, sizeof(line), &len, ": ");
	put(line, sizeof(line), &len, name);
	put(line, sizeof(line), &len, ": ");
	put(line, sizeof(line), &len, text);
	line[len++] = '\n';
	(void) !write(2, line, len);

	// Die of the signal, as the process would without any handler, but leave no core dump: the
	// PAL's memory may hold the enclave's secrets.
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	if (sig == SIGTRAP)
		_exit(128 + sig); // a trap does not fault again on return
	// Returning re-runs the faulting instruction; the kernel now kills the process (even a
	// namespace's PID 1: a forced fault signal at its default action).
}

int inclavare_pal_report_crashes(const char *program)
{
	size_t n = strlen(program);
	if (n > sizeof(prefix) - 3)
		n = sizeof(prefix) - 3;
	memcpy(prefix, program, n);
	if (n) {
		prefix[n++] = ':';
		prefix[n++] = ' ';
	}
	prefix[n] = '\0';
	for (int i = 0; i < NFAULT; i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = fault_handler;
		// SA_ONSTACK: the Go runtime requires it of every handler on its threads.
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
		sigfillset(&sa.sa_mask);
		if (sigaction(fault_signals[i], &sa, &go_action[i]) != 0)
			return -1;
	}
	return 0;
}
