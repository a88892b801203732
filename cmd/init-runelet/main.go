// Command init-runelet is PID 1 of an enclave container (`init`) and the process `rune exec` runs in
// one (`exec -- args…`). rune mounts it into the container and runs it through the host's dynamic
// loader; it is not meant to be started by hand.
package main

import (
	"fmt"
	"os"

	"github.com/inclavare-containers/inclavare-go/enclave"
	_ "github.com/inclavare-containers/inclavare-go/enclave/wasm" // registers builtin:wasm
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/runelet"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: init-runelet init | exec -- command [args…]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		os.Exit(runelet.Main(openRuntime, openEvidence))
	case "exec":
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		os.Exit(runelet.Exec(args))
	default:
		fmt.Fprintf(os.Stderr, "init-runelet: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func openRuntime(cfg *runelet.Config) (enclave.Runtime, error) {
	if name, ok := cfg.Settings.Builtin(); ok {
		return enclave.Builtin(name)
	}
	return pal.Load(cfg.RuntimePath)
}

func openEvidence(cfg *runelet.Config) (runelet.EvidenceSource, error) {
	return nil, nil
}
