package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

const kbsImage = "docker.io/library/rune-shim-kbs:latest"

// testKBS: containers of containerd-shim-rune-v2 get a secret, and run a sealed module, from the
// tenant's verdictd (the real binary on loopback) whose policy pins the measurement the tenant
// computes from the container's final OCI spec; another configuration fails `ctr task start` with
// the broker's reason, and its task is gone (ctr deleted it, without force); nothing of the secret or the
// module's plaintext is left on the host.
func testKBS(t *testing.T, s *suite) {
	_, tools := clients.Prerequisites(t, "busybox", "go")
	prog := buildWasm(t, tools["go"], "./tests/integration/testdata/enclaveprog")
	sealedModule, key, marker := harness.SealedProgram(t, prog, true, "tenant/key/prog")
	s.importImage(t, tools["busybox"], kbsImage, map[string][]byte{"app/prog.wasm": prog, "app/sealed.wasm": sealedModule})

	secret := []byte("shim-delivered secret " + hex.EncodeToString(marker[:8]))
	sum := sha256.Sum256(secret)
	addr, leaf, brokerOpts := s.planBroker(t)
	broker := []string{"--net-host", "--env", "ENCLAVE_TYPE=sim", "--env", "ENCLAVE_RUNTIME_PATH=builtin:wasm",
		"--env", "ENCLAVE_KBS_URL=https://" + addr, "--env", "ENCLAVE_KBS_PIN=" + kbs.PinOf(leaf)}
	withSecret := append(append([]string{}, broker...), "--env", "ENCLAVE_SECRETS=tenant/key/db:/run/secrets/db")

	// create makes the container (no task yet) and returns the measurement of code as the tenant
	// computes it from the container's OCI spec.
	create := func(id string, flags []string, code []byte, cmd ...string) string {
		args := append(append([]string{"containers", "create", "--runtime", runtimeType}, flags...), kbsImage, id)
		s.MustCtr(t, append(args, cmd...)...)
		t.Cleanup(func() { s.Remove(t, id) })
		var info struct{ Spec *specs.Spec }
		if err := json.Unmarshal([]byte(s.MustCtr(t, "containers", "info", id)), &info); err != nil || info.Spec == nil || info.Spec.Process == nil {
			t.Fatalf("ctr containers info %s: %v", id, err)
		}
		return harness.EnclaveMeasurement(t, code, info.Spec)
	}
	m1 := create("kbs-secret", withSecret, prog, "/app/prog.wasm", "digest", "/run/secrets/db")
	m2 := create("kbs-sealed", broker, sealedModule, "/app/sealed.wasm", "args", "sealed-ok")
	create("kbs-other", withSecret, prog, "/app/prog.wasm", "digest", "/run/secrets/db", "operator")
	brokerOpts.Policy = harness.SimPolicy(m1, m2)
	brokerOpts.Resources = map[string][]byte{"tenant/key/db": secret, "tenant/key/prog": key}
	b := harness.Broker(t, brokerOpts)

	start := func(id string) clients.Result {
		return s.CtrCmd(t, "task", "start", "--fifo-dir", s.fifoDir, id)
	}
	if res := start("kbs-secret"); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != hex.EncodeToString(sum[:]) {
		t.Fatalf("the attested enclave did not read its secret: %s\nbroker:\n%s", res, b.Log())
	}
	if res := start("kbs-sealed"); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "|sealed-ok|" {
		t.Fatalf("the sealed module did not run: %s\nbroker:\n%s", res, b.Log())
	}
	res := start("kbs-other")
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "PolicyDeny") || strings.Contains(res.Stdout, hex.EncodeToString(sum[:])) {
		t.Fatalf("another configuration: %s", res)
	}
	// The refused task stopped, as after a failed runc start, so ctr's own delete (which
	// refuses a task still created) removed it.
	if task, listed := s.Task(t, "kbs-other"); listed {
		t.Fatalf("the refused task is still there: %+v", task)
	}
	for _, id := range []string{"kbs-secret", "kbs-sealed", "kbs-other"} {
		s.Remove(t, id)
	}
	roots := []string{s.dir, "/run", "/var/lib/rune", os.TempDir()}
	harness.AssertBytesNowhere(t, secret, roots, b.Resource)
	harness.AssertBytesNowhere(t, marker, roots)
}
