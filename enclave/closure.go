package enclave

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Closure is an executable or library with everything the dynamic loader needs to run it.
type Closure struct {
	// Interpreter is the host's dynamic loader (PT_INTERP), "" for a static binary.
	Interpreter string
	// Libraries maps each needed soname to the host file that provides it.
	Libraries map[string]string
}

// ResolveClosure finds the shared-library closure of the ELF files in paths by reading their dynamic
// sections, never by running them: a PAL library may be untrusted, and ldd would execute it.
func ResolveClosure(paths ...string) (*Closure, error) {
	c := &Closure{Libraries: map[string]string{}}
	dirs := librarySearchPath()
	queue := append([]string(nil), paths...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		f, err := elf.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read ELF %s: %w", path, err)
		}
		interp, needed, runpath, err := dynamicInfo(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read ELF %s: %w", path, err)
		}
		if interp != "" && c.Interpreter == "" {
			c.Interpreter = interp
		}
		for _, lib := range needed {
			if _, ok := c.Libraries[lib]; ok {
				continue
			}
			found := ""
			for _, d := range append(expandOrigin(runpath, filepath.Dir(path)), dirs...) {
				cand := filepath.Join(d, lib)
				if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() {
					found = cand
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("%s needs %s, which is not installed on this host", path, lib)
			}
			c.Libraries[lib] = found
			queue = append(queue, found)
		}
	}
	if c.Interpreter != "" {
		if _, err := os.Stat(c.Interpreter); err != nil {
			return nil, fmt.Errorf("dynamic loader: %w", err)
		}
	}
	return c, nil
}

func dynamicInfo(f *elf.File) (interp string, needed, runpath []string, err error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, nil, err
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if f.Section(".dynamic") == nil {
		return interp, nil, nil, nil
	}
	if needed, err = f.DynString(elf.DT_NEEDED); err != nil {
		return "", nil, nil, err
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := f.DynString(tag)
		if err != nil {
			return "", nil, nil, err
		}
		for _, v := range vals {
			runpath = append(runpath, filepath.SplitList(v)...)
		}
	}
	return interp, needed, runpath, nil
}

func expandOrigin(dirs []string, origin string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
		out = append(out, d)
	}
	return out
}

// librarySearchPath is the loader's default search path: ld.so.conf entries, then the standard dirs.
func librarySearchPath() []string {
	var dirs []string
	readConf("/etc/ld.so.conf", &dirs, 0)
	return append(dirs, "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
		"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib", "/usr/local/lib")
}

func readConf(path string, dirs *[]string, depth int) {
	if depth > 4 {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "include "):
			matches, _ := filepath.Glob(strings.TrimSpace(strings.TrimPrefix(line, "include ")))
			for _, m := range matches {
				readConf(m, dirs, depth+1)
			}
		default:
			*dirs = append(*dirs, line)
		}
	}
}
