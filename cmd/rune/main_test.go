package main

import (
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli"
)

// runcHelp is `runc [command] --help`: the runc-compatible surface rune must offer.
func runcHelp(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("runc", append(args, "--help")...).Output()
	if err != nil {
		t.Fatalf("runc %s --help: %v (runc is what rune must be compatible with; install it)", strings.Join(args, " "), err)
	}
	return string(out)
}

// section is the lines of help text under heading (e.g. "COMMANDS:") up to the next heading.
func section(help, heading string) []string {
	var lines []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case strings.TrimSpace(l) == heading:
			in = true
		case in && l != "" && !strings.HasPrefix(l, " "):
			return lines
		case in && strings.TrimSpace(l) != "":
			lines = append(lines, l)
		}
	}
	return lines
}

var flagName = regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`)

// flagNames are the long names of flags, "all, a" counting as "all" and "a".
func flagNames(flags []cli.Flag) map[string]bool {
	names := map[string]bool{}
	for _, f := range flags {
		for _, n := range strings.Split(f.GetName(), ",") {
			names[strings.TrimSpace(n)] = true
		}
	}
	return names
}

// TestCommandsMatchRunc: every command the installed runc has, rune has, with every flag runc's
// gives, so that Docker, containerd and CRI tools drive rune as they drive runc. A flag runc has
// and rune lacks fails here, not in a user's bug report.
func TestCommandsMatchRunc(t *testing.T) {
	app := newApp()
	commands := map[string]cli.Command{}
	for _, c := range app.Commands {
		commands[c.Name] = c
	}
	var runcCommands []string
	for _, l := range section(runcHelp(t), "COMMANDS:") {
		name := strings.TrimSuffix(strings.Fields(l)[0], ",")
		if name != "help" {
			runcCommands = append(runcCommands, name)
		}
	}
	if len(runcCommands) < 15 {
		t.Fatalf("read only %q from runc's help", runcCommands)
	}
	checked := 0
	for _, name := range runcCommands {
		c, ok := commands[name]
		if !ok {
			t.Errorf("rune has no %q command", name)
			continue
		}
		have := flagNames(c.Flags)
		for _, l := range section(runcHelp(t, name), "OPTIONS:") {
			m := flagName.FindStringSubmatch(l)
			if m == nil || m[1] == "help" {
				continue
			}
			checked++
			if !have[m[1]] {
				t.Errorf("rune %s has no --%s (runc: %s)", name, m[1], strings.TrimSpace(l))
			}
		}
	}
	if checked < 50 {
		t.Errorf("read only %d flags from runc's help", checked)
	}
}

// TestGlobalFlags: runc's global flags as docs/ARCHITECTURE.md lists them (runc 1.2 dropped
// --criu, which older runc still lists), and rune's manifest flags.
func TestGlobalFlags(t *testing.T) {
	have := flagNames(newApp().Flags)
	for _, f := range []string{"root", "log", "log-format", "debug", "systemd-cgroup", "rootless",
		"manifest-trust", "require-manifest", "manifest-allow-ephemeral"} {
		if !have[f] {
			t.Errorf("rune has no global --%s", f)
		}
	}
}

// TestOwnCommands: rune's commands beyond runc's are the documented ones, each with help.
func TestOwnCommands(t *testing.T) {
	runc := map[string]bool{}
	for _, l := range section(runcHelp(t), "COMMANDS:") {
		runc[strings.TrimSuffix(strings.Fields(l)[0], ",")] = true
	}
	var own []string
	for _, c := range newApp().Commands {
		if c.Usage == "" {
			t.Errorf("command %s has no usage text", c.Name)
		}
		if !runc[c.Name] {
			own = append(own, c.Name)
		}
	}
	sort.Strings(own)
	if want := []string{"attest", "sim-platform-cert"}; !slices.Equal(own, want) {
		t.Errorf("rune's own commands %q, want %q", own, want)
	}
}
