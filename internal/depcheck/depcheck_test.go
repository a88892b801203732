// Package depcheck holds the test that keeps the tenant's tools free of runtime code: a verifier
// or key broker the tenant runs must not link the runelet, the enclave runtimes, the PAL loader,
// the launcher or the shim, which it neither needs nor should trust.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/inclavare-containers/inclavare-go/"

func TestTenantToolsLinkNoRuntime(t *testing.T) {
	forbidden := []string{"runelet", "enclave", "launcher", "pal", "shim"}
	for _, cmd := range []string{"shelter", "verdictd", "verdict"} {
		out, err := exec.Command("go", "list", "-deps", "../../cmd/"+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps ./cmd/%s: %v\n%s", cmd, err, out)
		}
		for _, pkg := range strings.Fields(string(out)) {
			rel, ok := strings.CutPrefix(pkg, module)
			if !ok {
				continue
			}
			for _, f := range forbidden {
				if rel == f || strings.HasPrefix(rel, f+"/") {
					t.Errorf("cmd/%s links %s", cmd, pkg)
				}
			}
		}
	}
}
