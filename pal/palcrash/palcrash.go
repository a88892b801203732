// Package palcrash reads the Go runtime's crash report of a process that died inside a PAL (or the
// line pal.ReportCrashes writes instead) and says which PAL call crashed. It is a parser of a
// process's stderr and nothing else: it imports no cgo, so that rune reads the runelet's crash
// report without linking the PAL loader.
package palcrash

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Crash describes a process that died inside a PAL, as read from the Go
// runtime's crash report on its stderr (or the file given to
// runtime/debug.SetCrashOutput).
//
// A PAL runs in the process that loads it, so a fault in PAL code kills that
// process: the Go runtime catches the signal, prints "SIGSEGV: segmentation
// violation ... signal arrived during cgo execution" with the crashing
// goroutine's stack, and exits with status 2 (with GOTRACEBACK=crash it
// aborts instead). rune therefore loads PALs only in the runelet, a separate
// process, and reads its crash report with Parse.
type Crash struct {
	// Signal is the signal's name, e.g. "SIGSEGV".
	Signal string
	// Description is the runtime's text for it, e.g. "segmentation violation".
	Description string
	// InCgo is true when the signal arrived while C code (the PAL) ran.
	InCgo bool
	// Call is the PAL function that was running (e.g. "pal_init"), "dlopen"
	// for a crash in the library's constructors, or "" when the stack does
	// not show one.
	Call string
}

func (c *Crash) Error() string {
	switch {
	case c.Call != "":
		return fmt.Sprintf("enclave runtime crashed in %s: %s: %s", c.Call, c.Signal, c.Description)
	case c.InCgo:
		return fmt.Sprintf("enclave runtime crashed in C code: %s: %s", c.Signal, c.Description)
	}
	return fmt.Sprintf("runelet crashed: %s: %s", c.Signal, c.Description)
}

// The patterns compile on first use: bounded repetitions expand into large programs, and every rune
// command would otherwise pay for them at start-up (about 10 ms here).
var (
	// The first line of the runtime's report for a fatal signal.
	crashHeader = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(SIG[A-Z0-9]{2,10}): ([ -~]{1,200})$`)
	})
	// A frame of one of this package's C trampolines (see cgo.go).
	crashFrame = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`\._Cfunc_palcall_([a-z0-9_]{1,64})\(`)
	})
	// The one line ReportCrashes writes instead of the runtime's report.
	crashLine = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:[ -~]{0,128}: )?enclave runtime crashed in ([a-z0-9_]{1,64}): (SIG[A-Z0-9]{2,10}): ([ -~]{1,200})$`)
	})
)

// maxCrashReport bounds how much of a report is read; the crashing
// goroutine's frames come first.
const maxCrashReport = 1 << 20

// Parse finds a fatal-signal crash report in output: the Go runtime's,
// or the line pal.ReportCrashes writes. It returns false when output holds none
// (a clean exit, a Go panic without a signal, or unrelated text).
func Parse(output []byte) (*Crash, bool) {
	if len(output) > maxCrashReport {
		output = output[:maxCrashReport]
	}
	var c *Crash
	inStack := false
	sc := bufio.NewScanner(bytes.NewReader(output))
	sc.Buffer(make([]byte, 0, 4096), maxCrashReport)
	for sc.Scan() {
		line := sc.Text()
		if c == nil {
			if m := crashLine().FindStringSubmatch(line); m != nil {
				return &Crash{Signal: m[2], Description: m[3], InCgo: true, Call: m[1]}, true
			}
			if m := crashHeader().FindStringSubmatch(line); m != nil {
				c = &Crash{Signal: m[1], Description: m[2]}
			}
			continue
		}
		if strings.TrimSpace(line) == "signal arrived during cgo execution" {
			c.InCgo = true
		}
		// The first goroutine printed is the one that took the signal; the
		// others (possibly blocked in other PAL calls) do not count.
		if strings.HasPrefix(line, "goroutine ") {
			inStack = true
			continue
		}
		if inStack && line == "" {
			break
		}
		if m := crashFrame().FindStringSubmatch(line); m != nil && inStack {
			c.Call = palCallName(m[1])
			break
		}
	}
	return c, c != nil
}

// palCallName maps a trampoline name to the PAL function it calls.
func palCallName(trampoline string) string {
	switch trampoline {
	case "dlopen", "dlsym", "dlclose":
		return "dlopen"
	}
	if !strings.HasPrefix(trampoline, "pal_") {
		return ""
	}
	for _, suffix := range []string{"_v1", "_v3"} {
		trampoline = strings.TrimSuffix(trampoline, suffix)
	}
	return trampoline
}
