package enclavehost

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"golang.org/x/sys/unix"
)

// Closure is an executable or library with everything the dynamic loader needs to run it.
type Closure struct {
	// Interpreter is the resolved host path of the dynamic loader (PT_INTERP), "" for a static binary.
	Interpreter string
	// Libraries maps each needed library name (never containing '/') to the resolved host path of
	// the file that provides it.
	Libraries map[string]string
}

// maxClosure bounds the number of objects in a closure: each becomes a layer of the container's
// read-only overlay.
const maxClosure = 64

// ResolveClosure finds the shared-library closure of the ELF files in paths as the dynamic loader
// would, by reading their program headers and dynamic segments (up to DT_NULL), never by running
// them: a PAL library may be hostile, and ldd would execute it. paths[0] sets the architecture the
// others must share; a library of another class or machine is skipped, as the loader does.
//
// Library names are looked up by name only: a DT_NEEDED entry containing '/' is refused. A
// DT_RUNPATH or DT_RPATH entry (with $ORIGIN and ${ORIGIN} expanded) is honoured only when it lies
// inside one of palDirs or inside a system library directory (ld.so.conf and the standard ones);
// others are ignored. Every library and the loader must pass CheckRootOwned.
func ResolveClosure(palDirs []string, paths ...string) (*Closure, error) {
	if len(paths) == 0 {
		return nil, errors.New("resolve closure: no file")
	}
	sys := librarySearchPath()
	trusted := resolvedDirs(append(append([]string(nil), palDirs...), sys...))
	c := &Closure{Libraries: map[string]string{}}
	type object struct {
		path, origin string
		// chain is the expanded DT_RPATH of the objects that led to this one: the loader searches
		// it, after the object's own DT_RPATH, when the object has no DT_RUNPATH.
		chain []string
	}
	var class byte
	var machine uint16
	var queue []object
	for _, p := range paths {
		queue = append(queue, object{path: p, origin: filepath.Dir(p)})
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		if seen[obj.path] {
			continue
		}
		seen[obj.path] = true
		if len(seen) > maxClosure {
			return nil, fmt.Errorf("the shared-library closure of %s has more than %d files", strings.Join(paths, " and "), maxClosure)
		}
		o, err := openELF(obj.path)
		if err != nil {
			return nil, fmt.Errorf("read ELF %s: %w", obj.path, err)
		}
		if class == 0 {
			class, machine = o.class, o.machine
		} else if o.class != class || o.machine != machine {
			return nil, fmt.Errorf("%s is built for another architecture than %s", obj.path, paths[0])
		}
		if o.interp != "" && c.Interpreter == "" {
			interp, err := hostFile(o.interp)
			if err != nil {
				return nil, fmt.Errorf("dynamic loader of %s: %w", obj.path, err)
			}
			c.Interpreter = interp
		}
		own := expandDirs(o.rpath, obj.origin, trusted)
		var dirs, chain []string
		if o.hasRunpath {
			// The loader ignores every DT_RPATH, the object's and its loaders', when DT_RUNPATH is set.
			dirs = expandDirs(o.runpath, obj.origin, trusted)
			chain = obj.chain
		} else {
			dirs = append(append(dirs, own...), obj.chain...)
			chain = append(append([]string(nil), own...), obj.chain...)
		}
		dirs = append(dirs, sys...)
		for _, lib := range o.needed {
			if lib == "" || strings.Contains(lib, "/") {
				return nil, fmt.Errorf("%s needs library %q: a library name must not contain '/' (libraries are looked up by name only)", obj.path, lib)
			}
			if _, ok := c.Libraries[lib]; ok {
				// The loader matches a name it already loaded before searching again.
				continue
			}
			found, err := findLibrary(lib, dirs, class, machine)
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", obj.path, lib, err)
			}
			if found == "" {
				return nil, fmt.Errorf("%s needs %s, which is not installed on this host", obj.path, lib)
			}
			c.Libraries[lib] = found
			queue = append(queue, object{path: found, origin: filepath.Dir(found), chain: chain})
		}
	}
	return c, nil
}

// findLibrary returns the resolved path of the first file named name in dirs that is an ELF
// object of the given class and machine, "" when there is none.
func findLibrary(name string, dirs []string, class byte, machine uint16) (string, error) {
	for _, d := range dirs {
		p, err := filepath.EvalSymlinks(filepath.Join(d, name))
		if err != nil {
			continue
		}
		o, err := openELF(p)
		if err != nil || o.class != class || o.machine != machine {
			// The loader skips files it cannot use and searches on.
			continue
		}
		if err := CheckRootOwned(p); err != nil {
			return "", fmt.Errorf("refusing to inject %s into a container: %w", p, err)
		}
		return p, nil
	}
	return "", nil
}

// hostFile resolves path, an absolute path the host will inject, and checks it with CheckRootOwned.
func hostFile(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q is not an absolute path", path)
	}
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if err := CheckRootOwned(p); err != nil {
		return "", fmt.Errorf("refusing to inject %s into a container: %w", p, err)
	}
	return p, nil
}

// openELF reads the loader's view of the regular file at path, without blocking on a FIFO.
func openELF(path string) (*elfObject, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return readELF(f, fi.Size())
}

// expandDirs expands $ORIGIN in a DT_RUNPATH or DT_RPATH list and keeps the entries that lie inside
// a trusted directory (resolved); the loader would look in the others, the host does not.
func expandDirs(dirs []string, origin string, trusted []string) []string {
	var out []string
	for _, d := range dirs {
		d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
		if !filepath.IsAbs(d) || strings.Contains(d, "$") {
			// Relative entries (the loader's working directory) and $LIB / $PLATFORM: not honoured.
			continue
		}
		r, err := filepath.EvalSymlinks(d)
		if err != nil {
			continue
		}
		for _, t := range trusted {
			if t != "/" && enclave.PathWithin(t, r) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// resolvedDirs resolves the symbolic links of each existing directory in dirs.
func resolvedDirs(dirs []string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			out = append(out, r)
		}
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
