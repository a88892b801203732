// Command enclaveprog is the workload of the enclave integration tests, built for WASI and for Linux.
//
//	enclaveprog exit N         print "exit N" and exit with N
//	enclaveprog args ARGS…     print each argument between | marks
//	enclaveprog env NAME       print the value of NAME, or "unset"
//	enclaveprog sleep          print "sleeping" and wait until killed
//	enclaveprog evidence TEXT  print, in hex, evidence whose report data is TEXT (zero-padded to 64
//	                           bytes), asked of the enclave through the workload's own API
//	enclaveprog digest PATH    print the SHA-256 of the file at PATH (a secret is never printed)
//	enclaveprog resource ID    print the SHA-256 of the key broker's resource ID, fetched at run time
//	                           through the workload's own API
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: enclaveprog exit N | args … | env NAME | sleep")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		fmt.Printf("exit %d\n", n)
		os.Exit(n)
	case "args":
		fmt.Println("|" + strings.Join(os.Args[2:], "|") + "|")
	case "env":
		if v, ok := os.LookupEnv(os.Args[2]); ok {
			fmt.Println(v)
		} else {
			fmt.Println("unset")
		}
	case "evidence":
		var rd [64]byte
		copy(rd[:], os.Args[2])
		ev, err := evidence(rd)
		if err != nil {
			fmt.Fprintln(os.Stderr, "evidence:", err)
			os.Exit(1)
		}
		fmt.Printf("%x\n", ev)
	case "digest":
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "digest:", err)
			os.Exit(1)
		}
		fmt.Printf("%x\n", sha256.Sum256(b))
	case "resource":
		b, err := resource(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "resource:", err)
			os.Exit(1)
		}
		fmt.Printf("%x\n", sha256.Sum256(b))
	case "sleep":
		fmt.Println("sleeping")
		for {
			time.Sleep(50 * time.Millisecond)
		}
	}
}
