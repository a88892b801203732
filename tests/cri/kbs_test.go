package cri

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

const kbsImage = "docker.io/inclavare-tests/cri-kbs:local"

// testKBS: CRI containers in a rune pod (host network) get a secret, and run a sealed module, from
// the tenant's verdictd (the real binary on loopback) whose policy pins the measurement the tenant
// computes from the container's OCI spec as CRI made it; another configuration fails crictl start
// with the broker's reason and leaves no rune state; nothing of the secret or the module's
// plaintext is left on the host.
func testKBS(t *testing.T, e *Env, pod, podJSON string) {
	prog, err := e.build([]string{"GOOS=wasip1", "GOARCH=wasm"}, "./tests/integration/testdata/enclaveprog")
	if err != nil {
		t.Fatal(err)
	}
	sealedModule, key, marker := harness.SealedProgram(t, prog, true, "tenant/key/prog")
	layer, err := clients.BusyboxRootfsTar(e.Busybox)
	if err == nil {
		layer, err = clients.WithFiles(layer, map[string][]byte{"app/prog.wasm": prog, "app/sealed.wasm": sealedModule})
	}
	if err == nil {
		err = e.importImage(kbsImage, layer, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("cri-delivered secret " + hex.EncodeToString(marker[:8]))
	sum := sha256.Sum256(secret)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	simRoot, err := clients.Run(context.Background(), clientTimeout, nil, e.Rune, "sim-platform-cert")
	if err != nil || simRoot.ExitCode != 0 {
		t.Fatalf("rune sim-platform-cert: %v %s", err, simRoot)
	}
	identity, leaf := verdictdtest.TLSIdentity(t)
	identity.Leaf = leaf
	env := func(secrets bool) map[string]string {
		m := map[string]string{"ENCLAVE_TYPE": "sim", "ENCLAVE_RUNTIME_PATH": "builtin:wasm",
			"ENCLAVE_KBS_URL": "https://" + addr, "ENCLAVE_KBS_PIN": kbs.PinOf(leaf)}
		if secrets {
			m["ENCLAVE_SECRETS"] = "tenant/key/db:/run/secrets/db"
		}
		return m
	}
	// create makes the container and returns its id and the measurement of code as the tenant
	// computes it from the OCI spec CRI made (crictl inspect, before start).
	create := func(name string, secrets bool, code []byte, cmd ...string) (string, string) {
		cfg := containerConfig(name, env(secrets), cmd...)
		cfg["image"] = map[string]any{"image": kbsImage}
		id := must(t, e, "create", "--no-pull", pod, writeJSON(t, e, name+".json", cfg), podJSON)
		t.Cleanup(func() { e.Run(context.Background(), "rm", "-f", id) })
		var info struct {
			Info struct {
				RuntimeSpec *specs.Spec `json:"runtimeSpec"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(must(t, e, "inspect", id)), &info); err != nil || info.Info.RuntimeSpec == nil {
			t.Fatalf("crictl inspect %s: no runtime spec: %v", id, err)
		}
		return id, harness.EnclaveMeasurement(t, code, info.Info.RuntimeSpec)
	}
	secretID, m1 := create("kbs-secret", true, prog, "/app/prog.wasm", "digest", "/run/secrets/db")
	sealedID, m2 := create("kbs-sealed", false, sealedModule, "/app/sealed.wasm", "args", "sealed-ok")
	otherID, _ := create("kbs-other", true, prog, "/app/prog.wasm", "digest", "/run/secrets/db", "operator")
	b := harness.Broker(t, verdictdtest.ProcessOptions{Listen: addr, SimRootPEM: []byte(simRoot.Stdout), Identity: &identity,
		Policy:    harness.SimPolicy(m1, m2),
		Resources: map[string][]byte{"tenant/key/db": secret, "tenant/key/prog": key}})

	for _, c := range []struct{ id, want string }{{secretID, hex.EncodeToString(sum[:])}, {sealedID, "|sealed-ok|"}} {
		must(t, e, "start", c.id)
		if ci := waitState(t, e, c.id, "CONTAINER_EXITED"); ci.Status.ExitCode != 0 {
			t.Fatalf("container %s exited %d\nlogs: %s\nbroker:\n%s", c.id, ci.Status.ExitCode, must(t, e, "logs", c.id), b.Log())
		}
		if out := must(t, e, "logs", c.id); strings.TrimSpace(out) != c.want {
			t.Fatalf("container %s printed %q, want %q", c.id, out, c.want)
		}
	}
	res, err := e.Run(context.Background(), "start", otherID)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "PolicyDeny") {
		t.Fatalf("crictl start of another configuration: %s", res)
	}
	if out, _ := e.Run(context.Background(), "logs", otherID); strings.Contains(out.Stdout, hex.EncodeToString(sum[:])) {
		t.Fatalf("the refused workload ran: %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.RuneRoot, Namespace, otherID)); !os.IsNotExist(err) {
		t.Fatalf("rune state of the refused container: %v, want none", err)
	}
	for _, id := range []string{secretID, sealedID, otherID} {
		must(t, e, "rm", id)
	}
	roots := []string{e.Dir, "/run", "/var/lib/rune", os.TempDir()}
	harness.AssertBytesNowhere(t, secret, roots, b.Resource)
	harness.AssertBytesNowhere(t, marker, roots)
}
