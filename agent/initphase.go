package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/bytesize"
)

// InitPhasePrefix opens the lines in which PID 1, while it initialises the enclave runtime, names
// what it is about to do (on its crash pipe, which rune reads when create fails): a PAL that never
// returns from pal_init fails create with "pal_init did not finish within …".
const InitPhasePrefix = "init-runelet phase: "

// Phases of PID 1's initialisation.
const (
	InitPhaseLoadPAL = "loading the PAL (dlopen, pal_get_version)"
	InitPhasePALInit = "pal_init"
)

// InitPhaseBuiltin is the phase of a built-in runtime's initialisation.
func InitPhaseBuiltin(runtime string) string { return "initialising " + runtime }

// EnvInitTimeout sets how long rune create waits for the enclave runtime to initialise (a Go
// duration; default DefaultInitTimeout).
const EnvInitTimeout = "RUNE_ENCLAVE_INIT_TIMEOUT"

// DefaultInitTimeout is how long rune create waits for the enclave runtime to initialise.
const DefaultInitTimeout = 2 * time.Minute

// InitTimeoutFromEnv returns the initialisation deadline the environment sets, or the default.
func InitTimeoutFromEnv() (time.Duration, error) {
	v := os.Getenv(EnvInitTimeout)
	if v == "" {
		return DefaultInitTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 2m", EnvInitTimeout, v)
	}
	return d, nil
}

// InitOutput splits what PID 1 wrote while initialising into the last phase it named and its
// last other line (a message of its own or of the enclave runtime).
func InitOutput(out []byte) (phase, last string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if p, ok := strings.CutPrefix(line, InitPhasePrefix); ok {
			phase = p
		} else if line != "" {
			last = line
		}
	}
	if len(last) > 300 {
		last = last[:300] + "…"
	}
	return phase, last
}

// Bounds on an enclave container's entrypoint, so that what rune hands the runelet (its Config,
// at most MaxMessage bytes, and its environment, through execve) always fits.
const (
	// MaxArgStrlen is the kernel's limit for one argument or environment string (MAX_ARG_STRLEN).
	MaxArgStrlen = 32 * 4096
	// MaxLaunchStrings bounds how many arguments and variables an entrypoint has.
	MaxLaunchStrings = 65536
	// MaxLaunchSize bounds the entrypoint's arguments, environment and working directory as the
	// runelet's Config carries them (JSON), leaving room in the Config for the rest.
	MaxLaunchSize = 768 << 10
)

// CheckLaunchSize refuses an entrypoint whose arguments or environment could not reach the
// runelet, with an error that says which limit and "argument list too long" (E2BIG), instead of
// the runelet failing later for a reason no one sees.
func CheckLaunchSize(l Launch) error {
	if n := len(l.Args) + len(l.Env); n > MaxLaunchStrings {
		return fmt.Errorf("argument list too long: the entrypoint has %d arguments and %d environment variables; an enclave container takes at most %d in all",
			len(l.Args), len(l.Env), MaxLaunchStrings)
	}
	for i, a := range l.Args {
		if len(a)+1 > MaxArgStrlen {
			return fmt.Errorf("argument list too long: argument %d is %d bytes; one argument may have at most %d (the kernel's MAX_ARG_STRLEN)", i, len(a), MaxArgStrlen-1)
		}
	}
	for _, e := range l.Env {
		if len(e)+1 > MaxArgStrlen {
			name, _, _ := strings.Cut(e, "=")
			if len(name) > 64 {
				name = name[:64] + "…"
			}
			return fmt.Errorf("argument list too long: environment variable %s is %d bytes; one variable may have at most %d (the kernel's MAX_ARG_STRLEN)", name, len(e), MaxArgStrlen-1)
		}
	}
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if len(data) > MaxLaunchSize {
		return fmt.Errorf("argument list too long: the entrypoint's arguments and environment take %s; an enclave container takes at most %s",
			bytesize.Format(int64(len(data))), bytesize.Format(MaxLaunchSize))
	}
	return nil
}
