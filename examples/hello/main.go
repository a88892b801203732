// Command hello is the demo workload: built for WASI (GOOS=wasip1 GOARCH=wasm) it runs in the
// builtin:wasm enclave runtime; built for Linux it runs as an ordinary container or in builtin:native.
// It greets, shows its arguments and a file of its root file system, and exits with the status given
// as its first argument.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	fmt.Printf("Hello from an enclave container! args=%q\n", os.Args)
	if b, err := os.ReadFile("/etc/hostname"); err == nil {
		fmt.Printf("/etc/hostname in my rootfs: %s", b)
	}
	if len(os.Args) > 1 {
		code, err := strconv.Atoi(os.Args[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, "hello: exit status %q is not a number\n", os.Args[1])
			os.Exit(2)
		}
		os.Exit(code)
	}
}
