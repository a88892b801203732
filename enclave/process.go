package enclave

import (
	"errors"
	"fmt"
	"path"
)

// Resolved is a Process with its working directory and program path made absolute.
type Resolved struct {
	// Path is the program, absolute in the rootfs.
	Path string
	// Dir is the working directory, "/" when the process named none.
	Dir string
	// Args is argv, the program path alone when the process gave none.
	Args []string
}

// Resolve applies the rules every runtime shares, so that what a runtime measures is what it runs:
// an empty working directory is "/", a relative program path is relative to it, and empty args are
// the program path.
func (p Process) Resolve() (Resolved, error) {
	if p.Path == "" {
		return Resolved{}, errors.New("process path is empty")
	}
	dir := p.Dir
	if dir == "" {
		dir = "/"
	}
	if !path.IsAbs(dir) {
		return Resolved{}, fmt.Errorf("working directory %q is not absolute", p.Dir)
	}
	prog := p.Path
	if !path.IsAbs(prog) {
		prog = path.Join(dir, prog)
	}
	args := p.Args
	if len(args) == 0 {
		args = []string{p.Path}
	}
	return Resolved{Path: prog, Dir: dir, Args: args}, nil
}
