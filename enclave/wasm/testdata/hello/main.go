// Command hello is a WASI test program for builtin:wasm. Its first argument picks what it does;
// the tests check its output byte for byte.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("hello")
		return
	}
	switch cmd, rest := os.Args[1], os.Args[2:]; cmd {
	case "args": // every argv entry, quoted, argv[0] included
		for _, a := range os.Args {
			fmt.Printf("%q\n", a)
		}
	case "env":
		for _, kv := range os.Environ() {
			fmt.Printf("%q\n", kv)
		}
	case "cat": // cat PATH...
		for _, p := range rest {
			b, err := os.ReadFile(p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "cat: %v\n", err)
				os.Exit(1)
			}
			os.Stdout.Write(b)
		}
	case "ls": // ls DIR
		entries, err := os.ReadDir(rest[0])
		if err != nil {
			fmt.Fprintf(os.Stderr, "ls: %v\n", err)
			os.Exit(1)
		}
		for _, e := range entries {
			kind := "f"
			switch {
			case e.IsDir():
				kind = "d"
			case e.Type()&fs.ModeSymlink != 0:
				kind = "l"
			}
			fmt.Printf("%s %s\n", e.Name(), kind)
		}
	case "write": // write PATH CONTENT
		if err := os.WriteFile(rest[0], []byte(rest[1]), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write: %v\n", err)
			os.Exit(1)
		}
	case "symlink": // symlink TARGET LINK
		if err := os.Symlink(rest[0], rest[1]); err != nil {
			fmt.Fprintf(os.Stderr, "symlink: %v\n", err)
			os.Exit(1)
		}
	case "exit": // exit N: a line on each stream, then exit status N
		n, _ := strconv.Atoi(rest[0])
		fmt.Println("out")
		fmt.Fprintln(os.Stderr, "err")
		os.Exit(n)
	case "pwd":
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintf(os.Stderr, "pwd: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(wd)
	case "stdin":
		io.Copy(os.Stdout, os.Stdin)
	case "random":
		b := make([]byte, 16)
		rand.Read(b)
		fmt.Println(hex.EncodeToString(b))
	case "time":
		fmt.Println(time.Now().Unix())
	case "grow": // grow MiB: allocate and touch that much memory
		mib, _ := strconv.Atoi(rest[0])
		chunks := make([][]byte, 0, mib)
		for i := 0; i < mib; i++ {
			c := make([]byte, 1<<20)
			for j := 0; j < len(c); j += 4096 {
				c[j] = byte(j) // touch every page
			}
			chunks = append(chunks, c)
		}
		fmt.Println("grew", len(chunks))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
		os.Exit(2)
	}
}
