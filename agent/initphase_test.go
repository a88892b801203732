package agent

import (
	"strings"
	"testing"
)

func TestCheckLaunchSize(t *testing.T) {
	many := make([]string, MaxLaunchStrings)
	for i := range many {
		many[i] = "V=1"
	}
	for _, tc := range []struct {
		name string
		l    Launch
		want string // "" means accepted
	}{
		{"ordinary", Launch{Args: []string{"/app/x.wasm", "a"}, Env: []string{"PATH=/bin"}}, ""},
		{"too many variables", Launch{Args: []string{"x"}, Env: many}, "argument list too long: the entrypoint has 1 arguments and 65536 environment variables"},
		{"one huge value", Launch{Args: []string{"x"}, Env: []string{"BIG=" + strings.Repeat("x", 10<<20)}}, "argument list too long: environment variable BIG is 10485764 bytes"},
		{"one huge argument", Launch{Args: []string{"x", strings.Repeat("a", MaxArgStrlen)}}, "argument list too long: argument 1 is 131072 bytes"},
		{"too much in all", Launch{Args: []string{"x"}, Env: repeat("V=", 100<<10, 10)}, "argument list too long: the entrypoint's arguments and environment take"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLaunchSize(tc.l)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("CheckLaunchSize: %v; want %q", err, tc.want)
			}
		})
	}
}

func repeat(prefix string, size, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strings.Repeat("v", size)
	}
	return out
}

func TestInitOutput(t *testing.T) {
	out := "pal: loading\n" + InitPhasePrefix + InitPhaseLoadPAL + "\nPAL log line\n" + InitPhasePrefix + InitPhasePALInit + "\n"
	phase, last := InitOutput([]byte(out))
	if phase != "pal_init" || last != "PAL log line" {
		t.Errorf("InitOutput = %q, %q", phase, last)
	}
}
