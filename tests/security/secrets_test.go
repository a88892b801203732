package security

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/native"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

// Secrets reach only the attested enclave (the key broker issue, part 2).
//
// Parties: the tenant runs verdictd with a policy pinning the workload's measurement, which covers
// the broker settings (which broker the enclave trusts, which resource lands where); the node
// operator runs rune and could start another workload, or the same one configured otherwise, or
// read the host's disks. The secret is placed by the runelet, inside the enclave boundary, in a
// private in-memory file system of the container, before the workload runs.

const secretText = "s3cr3t: the database password only the attested enclave may read"

// freeLoopback reserves a loopback address for verdictd: the enclave names the broker's URL in its
// settings before the broker runs (the URL is not measured: a broker is known by its key).
func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// plannedBroker is a verdictd for rune's enclave containers, planned before their bundles are
// made (they pin its key and name its address) and started once their measurements are known.
type plannedBroker struct {
	addr, pin string
	simRoot   []byte // rune's sim platform certificate: the broker's --sim-root
	identity  tls.Certificate
}

func planBroker(t *testing.T, r *harness.Runtime) plannedBroker {
	t.Helper()
	identity, leaf := verdictdtest.TLSIdentity(t)
	identity.Leaf = leaf
	return plannedBroker{
		addr: freeLoopback(t), pin: kbs.PinOf(leaf),
		simRoot:  []byte(r.Must(t, "sim-platform-cert").Stdout),
		identity: identity,
	}
}

// with is s served as planned.
func (p plannedBroker) with(s kbsSetup) kbsSetup {
	s.simRootPEM, s.listen, s.identity = p.simRoot, p.addr, &p.identity
	return s
}

// withoutNetworkNamespace lets the container reach the broker on the host's loopback.
func withoutNetworkNamespace(spec *specs.Spec) {
	var nss []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type != specs.NetworkNamespace {
			nss = append(nss, ns)
		}
	}
	spec.Linux.Namespaces = nss
}

type secretsCase struct {
	name, runtime, prog, goos, goarch string
	// measure is the tenant's own computation of the measurement (docs/measurement.md).
	measure func(exe []byte, spec *specs.Spec, k *enclave.KBS) string
}

var secretsCases = []secretsCase{
	{"native", "builtin:native", "/app/prog", "linux", "amd64", func(exe []byte, spec *specs.Spec, k *enclave.KBS) string {
		return native.Measure(exe, native.Launch{Args: spec.Process.Args, Env: workloadEnv(spec), Dir: spec.Process.Cwd, Secrets: k.Measured()})
	}},
	{"wasm", "builtin:wasm", "/app/prog.wasm", "wasip1", "wasm", func(exe []byte, spec *specs.Spec, k *enclave.KBS) string {
		return wasm.Measure(exe, wasm.Launch{Args: spec.Process.Args, Env: workloadEnv(spec), Dir: spec.Process.Cwd, Secrets: k.Measured()})
	}},
}

// workloadEnv is the container's environment without the enclave settings, as rune measures it.
func workloadEnv(spec *specs.Spec) []string {
	var out []string
	for _, kv := range spec.Process.Env {
		if !enclave.IsSettingsEnv(kv) {
			out = append(out, kv)
		}
	}
	return out
}

// secretsContainer makes an enclave container bundle whose settings ask the broker at addr
// (pinned) for repo/key/db at secretPath, running the test program with args; it shares the
// host's network to reach the broker on loopback. It returns the bundle and the measurement the
// tenant computes for it.
func secretsContainer(t *testing.T, c secretsCase, addr, pin, secretPath string, args ...string) (string, string) {
	t.Helper()
	dir, spec := harness.Bundle(t, append([]string{c.prog}, args...)...)
	exe, err := os.ReadFile(harness.BuildGo(t, "./tests/integration/testdata/enclaveprog", c.goos, c.goarch))
	if err != nil {
		t.Fatal(err)
	}
	harness.WriteRootfsFile(t, dir, strings.TrimPrefix(c.prog, "/"), exe, 0o755)
	k := &enclave.KBS{URL: "https://" + addr, Pin: pin, Secrets: []enclave.Secret{{ID: "repo/key/db", Path: secretPath}}}
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+c.runtime,
		"ENCLAVE_KBS_URL="+k.URL, "ENCLAVE_KBS_PIN="+pin, "ENCLAVE_SECRETS=repo/key/db:"+secretPath)
	withoutNetworkNamespace(spec)
	harness.WriteSpec(t, dir, spec)
	return dir, c.measure(exe, spec, k)
}

// TestSecretsReachOnlyTheAttestedEnclave: the enclave whose measurement the tenant pinned reads its
// secret as a file (native and wasm), and fetches it again at run time through its own API; a
// workload with another measurement (the same program asking for the secret at another path: what
// lands where is measured) is refused at start with the broker's reason, its workload never runs.
// The plaintext is nowhere on the host's file systems afterwards.
func TestSecretsReachOnlyTheAttestedEnclave(t *testing.T) {
	digest := sha256.Sum256([]byte(secretText))
	want := hex.EncodeToString(digest[:])
	for _, c := range secretsCases {
		t.Run(c.name, func(t *testing.T) {
			r := enclaveRune(t)
			kb := planBroker(t, r)
			addr, pin := kb.addr, kb.pin
			good, m := secretsContainer(t, c, addr, pin, "/run/secrets/db", "digest", "/run/secrets/db")
			atRunTime, m2 := secretsContainer(t, c, addr, pin, "/run/secrets/db", "resource", "repo/key/db")
			b := kbsStart(t, kb.with(kbsSetup{
				policies:  func(string) string { return kbsPoliciesFor(m, m2) },
				resources: map[string]string{"repo/key/db": secretText}}))

			res := r.Run(t, "run", "-b", good, "secret-ok-"+c.name)
			if res.Code != 0 || strings.TrimSpace(res.Stdout) != want {
				t.Fatalf("the attested enclave did not read its secret: exit %d\n%s\n%s\nbroker:\n%s", res.Code, res.Stdout, res.Stderr, b.log())
			}
			res = r.Run(t, "run", "-b", atRunTime, "secret-rt-"+c.name)
			if res.Code != 0 || strings.TrimSpace(res.Stdout) != want {
				t.Fatalf("run-time resource: exit %d\n%s\n%s\nbroker:\n%s", res.Code, res.Stdout, res.Stderr, b.log())
			}

			bad, _ := secretsContainer(t, c, addr, pin, "/run/other/db", "digest", "/run/other/db")
			id := "secret-bad-" + c.name
			r.Must(t, "create", "-b", bad, id)
			res = r.Run(t, "start", id)
			if res.Code == 0 || !strings.Contains(res.Stderr, "PolicyDeny") {
				t.Fatalf("another measurement was given the secret: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
			}
			// As after a failed runc start: stopped (its init ended), so that an engine can delete
			// it without force.
			if st := r.State(t, id); st["status"] != "stopped" {
				t.Errorf("after a refused start the container is %v, want stopped", st["status"])
			}
			r.Must(t, "delete", id)
			assertPlaintextNowhere(t, []string{good, atRunTime, bad, r.Root, "/run/rune", "/var/lib/rune"}, b.dir)
		})
	}
}

// kbsPoliciesFor releases every resource to sim enclaves with one of the measurements.
func kbsPoliciesFor(measurements ...string) string {
	q := make([]string, len(measurements))
	for i, m := range measurements {
		q[i] = `"` + m + `"`
	}
	return `{"default":{"tees":{"sim":{"measurements":{"measurement":[` + strings.Join(q, ",") + `]},"allow_unknown_tcb":true}}}}`
}

// assertPlaintextNowhere searches the given trees for the secret's bytes; skip is the broker's
// own store.
func assertPlaintextNowhere(t *testing.T, roots []string, skip string) {
	t.Helper()
	harness.AssertBytesNowhere(t, []byte(secretText), roots, skip)
}
