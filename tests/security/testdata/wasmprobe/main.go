// Command wasmprobe is a WASI guest (GOOS=wasip1) that tries what a hostile module would, for
// tests/security: each argument is OP=PATH and gets one output line, "OP PATH: ok …" or
// "OP PATH: error …".
//
//	read=PATH          open PATH and read it
//	list=DIR           list DIR's names
//	stat=PATH          stat PATH
//	write=PATH         open PATH for writing and write one byte at offset 0
//	create=PATH        create PATH (a marker that the guest ran)
//	symlink=TARGET:LINK create the symlink LINK -> TARGET
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	for _, arg := range os.Args[1:] {
		op, p, _ := strings.Cut(arg, "=")
		fmt.Printf("%s %s: %s\n", op, p, try(op, p))
	}
}

func try(op, p string) string {
	switch op {
	case "read":
		b, err := os.ReadFile(p)
		if err != nil {
			return "error " + err.Error()
		}
		return fmt.Sprintf("ok %d bytes", len(b))
	case "list":
		es, err := os.ReadDir(p)
		if err != nil {
			return "error " + err.Error()
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return "ok [" + strings.Join(names, " ") + "]"
	case "stat":
		fi, err := os.Stat(p)
		if err != nil {
			return "error " + err.Error()
		}
		return "ok " + fi.Mode().String()
	case "write":
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return "error " + err.Error()
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{0}, 0); err != nil {
			return "error " + err.Error()
		}
		return "ok"
	case "create":
		if err := os.WriteFile(p, []byte("ran\n"), 0o644); err != nil {
			return "error " + err.Error()
		}
		return "ok"
	case "symlink":
		target, link, _ := strings.Cut(p, ":")
		if err := os.Symlink(target, link); err != nil {
			return "error " + err.Error()
		}
		return "ok"
	}
	return "error unknown op"
}
