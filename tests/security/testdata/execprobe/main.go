// Command execprobe is the builtin:wasm workload of the exec confinement tests (GOOS=wasip1):
//
//	execprobe sleep          print "sleeping" and wait until killed
//	execprobe cat FILE…      print each file, as busybox cat does for the native and runc runs
//
// A wasm guest reads files through the process that hosts it, so /proc/self/status printed by
// this guest is the confinement of that process: what the exec gave the enclave process.
package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: execprobe sleep | cat FILE…")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sleep":
		fmt.Println("sleeping")
		for {
			time.Sleep(time.Hour)
		}
	case "cat":
		for _, name := range os.Args[2:] {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "execprobe:", err)
				os.Exit(1)
			}
			_, err = io.Copy(os.Stdout, f)
			f.Close()
			if err != nil {
				fmt.Fprintln(os.Stderr, "execprobe:", err)
				os.Exit(1)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "execprobe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
