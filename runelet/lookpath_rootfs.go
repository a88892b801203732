package runelet

import (
	"fmt"
	"os"
	"path"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

// LookPathInRootfs resolves name as the runelet will inside the container (LookPath), but
// from the host, never leaving rootfs: symlinks are resolved inside it. It returns the
// in-container path. rune measures at create, and the shim's carriers measure before it,
// through this one function.
func LookPathInRootfs(rootfs, name string, env []string, cwd string) (string, error) {
	p, err := LookPath(name, env, cwd, func(p string) bool {
		hp, err := securejoin.SecureJoin(rootfs, p)
		if err != nil {
			return false
		}
		fi, err := os.Stat(hp)
		return err == nil && fi.Mode().IsRegular()
	})
	if err != nil {
		return "", fmt.Errorf("%w (in the container's rootfs %s)", err, rootfs)
	}
	return p, nil
}

// InLayer returns name, cleaned, when it is an absolute path under the target of one of the
// enclave's encrypted layers: a program that exists only once the enclave unpacked the layer, so
// it is neither looked up in PATH nor looked for before (it must be named by its absolute path).
func InLayer(s *enclave.Settings, name string) (string, bool) {
	if s == nil || s.KBS == nil || !path.IsAbs(name) {
		return "", false
	}
	var targets []string
	for _, l := range s.KBS.Layers {
		targets = append(targets, l.Target)
	}
	if _, ok := enclave.LayerTarget(targets, path.Clean(name)); ok {
		return path.Clean(name), true
	}
	return "", false
}
