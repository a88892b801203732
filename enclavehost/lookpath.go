package enclavehost

import (
	"fmt"
	"os"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/inclavare-containers/inclavare-go/agent"
)

// LookPathInRootfs resolves name as the runelet will inside the container (LookPath), but
// from the host, never leaving rootfs: symlinks are resolved inside it. It returns the
// in-container path. rune measures at create, and the shim's carriers measure before it,
// through this one function.
func LookPathInRootfs(rootfs, name string, env []string, cwd string) (string, error) {
	p, err := agent.LookPath(name, env, cwd, func(p string) bool {
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
