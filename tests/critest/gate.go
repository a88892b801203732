package critest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

// Exception is a spec whose outcome under a handler differs from runc's by design.
type Exception struct {
	Handler string
	Spec    string // full text, as Result.Specs names it
	Reason  string
}

// Exceptions is the whole list: under each handler, every other spec must end as it does under
// runc.
var Exceptions = []Exception{{
	Handler: cri.HandlerSimNative,
	Spec:    "[k8s.io] Security Context NamespaceOption runtime should support ContainerPID",
	Reason: "PID 1 of an enclave container is init-runelet, by design: it holds the enclave runtime, " +
		"forwards signals to the workload, reaps, and exits with the workload's status; the workload " +
		"(here nginx) is its child. The spec waits for /proc/1/cmdline to say nginx's \"master process\"; " +
		"it names the runelet. Rewriting the runelet's command line to mimic the workload's would make " +
		"/proc lie to every tool that reads it.",
}}

// RuncFailures are the specs runc itself fails on this kind of host, per containerd generation
// (1 or 2), with the reason. Every handler must end them as runc does; a runc failure not
// listed here fails the gate, since it means the environment, not a runtime, broke.
var RuncFailures = map[int]map[string]string{
	1: {
		"[k8s.io] Idempotence StopContainer should not return an error if not found": "containerd 1.6's CRI answers " +
			"NotFound for a container it does not know (fixed in 1.7)",
		"[k8s.io] Idempotence StopPodSandbox should not return an error if not found": "containerd 1.6's CRI answers " +
			"NotFound for a sandbox it does not know (fixed in 1.7)",
		maskedPaths: maskedPathsReason,
	},
	2: {
		maskedPaths: maskedPathsReason,
	},
}

// RuncFlaky are specs runc passes or fails on this kind of host by a race outside the runtimes
// (containerd's own shim), per containerd generation, with the reason. A runc failure of one
// is not a baseline problem, and then any outcome of another handler stands; when runc passes
// it, every handler must too.
var RuncFlaky = map[int]map[string]string{
	1: {
		oomKilled: "containerd 1.6's runc shim starts watching a container's OOM events only after start " +
			"returns (runtime/v2/runc/v2 Start); the spec's container allocates at once, and on a loaded " +
			"host the kernel's OOM kill can come first: the event is lost and the reason is Error. " +
			"containerd-shim-rune-v2 watches from create (shim/task).",
	},
}

const (
	oomKilled         = "[k8s.io] Container OOM runtime should output OOMKilled reason should terminate with exitCode 137 and reason OOMKilled"
	maskedPaths       = "[k8s.io] Security Context bucket runtime should support MaskedPaths"
	maskedPathsReason = "the spec masks /bin/ls and expects `sh -c ls` to fail, but Debian's static busybox " +
		"shell runs its ls applet without exec'ing /bin/ls (the runtimes do mask the file)"
)

// exception returns the exception for handler and spec, if any.
func exception(handler, spec string) (Exception, bool) {
	i := slices.IndexFunc(Exceptions, func(x Exception) bool { return x.Handler == handler && x.Spec == spec })
	if i < 0 {
		return Exception{}, false
	}
	return Exceptions[i], true
}

func failed(s Spec) bool { return s.State != "passed" && s.State != "skipped" && s.State != "pending" }

// Baseline checks runc's own run on containerd generation gen: its failures must be the
// listed ones.
func Baseline(runc *Result, gen int) []string {
	var problems []string
	for _, n := range runc.Names() {
		s := runc.Specs[n]
		_, known := RuncFailures[gen][n]
		_, flaky := RuncFlaky[gen][n]
		if failed(s) && !known && !flaky {
			problems = append(problems, fmt.Sprintf("runc %s (not a known failure on containerd %d.x): %s: %s", s.State, gen, n, shorten(s.Failure)))
		}
	}
	return problems
}

// Gate compares other's run with runc's, spec by spec: the same specs, each ending the same
// way, except Exceptions, which must end as they say (runc passes, other does not): an
// exception that no longer holds is reported too, so the list stays true.
func Gate(runc, other *Result, gen int) []string {
	var problems []string
	for _, n := range runc.Names() {
		want := runc.Specs[n]
		if _, flaky := RuncFlaky[gen][n]; flaky && failed(want) {
			if _, ok := other.Specs[n]; ok {
				continue
			}
		}
		got, ok := other.Specs[n]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s did not run %q", other.Handler, n))
			continue
		}
		if x, ok := exception(other.Handler, n); ok {
			if want.State != "passed" || got.State == "passed" {
				problems = append(problems, fmt.Sprintf("exception no longer holds (runc %s, %s %s): %s (listed because: %s)",
					want.State, other.Handler, got.State, n, x.Reason))
			}
			continue
		}
		if got.State != want.State {
			problems = append(problems, fmt.Sprintf("runc %s, %s %s: %s: %s", want.State, other.Handler, got.State, n, shorten(got.Failure+want.Failure)))
		}
	}
	for _, n := range other.Names() {
		if _, ok := runc.Specs[n]; !ok {
			problems = append(problems, fmt.Sprintf("%s ran %q, runc did not", other.Handler, n))
		}
	}
	return problems
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// shorten keeps the start of a long failure message (gomega prints whole structures).
func shorten(s string) string {
	const n = 1200
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
