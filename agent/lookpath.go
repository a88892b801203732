package agent

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// defaultPath is the search path when the process environment has no PATH (runc's choice too).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LookPath resolves a program name as exec(3p) would, with exists deciding whether a candidate path
// is a regular file. rune (on the host, inside the rootfs) and the runelet (in the container) share
// it, so that what rune measures at create is what the runelet runs.
func LookPath(name string, env []string, cwd string, exists func(path string) bool) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if !exists(p) {
			return "", enclave.WithKind(enclave.KindNotFound, fmt.Errorf("entrypoint %s: no such file", name))
		}
		return p, nil
	}
	pathEnv := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		p := filepath.Join(dir, name)
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if exists(p) {
			return p, nil
		}
	}
	return "", enclave.WithKind(enclave.KindNotFound, fmt.Errorf("entrypoint %q: executable file not found in $PATH", name))
}
