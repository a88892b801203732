// Command init-runelet is PID 1 of an enclave container (`init`), the process `rune exec` runs in
// one (`exec -- args…`), and, on the host, rune create's helper (`prepare`, `sim-platform-cert`).
// rune mounts it into the container and runs it through the host's dynamic loader; it is not meant
// to be started by hand.
package main

import (
	"fmt"
	"os"

	_ "github.com/inclavare-containers/inclavare-go/attestation/snp" // SEV-SNP attester
	_ "github.com/inclavare-containers/inclavare-go/attestation/tdx" // TDX attester
	"github.com/inclavare-containers/inclavare-go/runelet"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: init-runelet init | exec -- command [args…] | prepare | sim-platform-cert [KEYFILE]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		os.Exit(runelet.Main(openRuntime, openEvidence))
	case "prepare":
		os.Exit(prepareMain())
	case "sim-platform-cert":
		os.Exit(simPlatformCertMain(os.Args[2:]))
	case "exec":
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		os.Exit(runelet.Exec(openRuntime, args))
	default:
		fmt.Fprintf(os.Stderr, "init-runelet: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
