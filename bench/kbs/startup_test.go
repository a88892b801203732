package kbs

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

// runs numbers the containers: b.N restarts for every probe of a benchmark.
var runs atomic.Int64

// BenchmarkStartup: `rune run` of an enclave container (builtin:native on the sim TEE, busybox
// `true`, host network) to its exit, as root: without a key broker, with one secret (the runelet
// attests to verdictd on loopback and places the secret before the workload runs), and with a
// sealed entrypoint (attest, fetch the key, decrypt 1 MB of busybox into a sealed memfd). The
// ratios to "plain" are the added start-up time; run.sh prints them.
func BenchmarkStartup(b *testing.B) {
	r := harness.Rune(b)
	harness.SimEnclave(b, r)
	simRoot := r.Must(b, "sim-platform-cert").Stdout
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		b.Fatal(err)
	}
	sealedBB, key, _ := harness.SealedProgram(b, bb, false, "bench/key/exe")

	// The bundles name the broker (its pin is measured) before it runs with their measurements.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	identity, leaf := verdictdtest.TLSIdentity(b)
	identity.Leaf = leaf
	broker := []string{"ENCLAVE_KBS_URL=https://" + addr, "ENCLAVE_KBS_PIN=" + kbs.PinOf(leaf)}
	var measurements []string
	bundle := func(entry string, code []byte, env ...string) string {
		dir, spec := harness.Bundle(b, entry)
		if code != nil {
			harness.WriteRootfsFile(b, dir, entry[1:], code, 0o755)
		} else {
			code = bb
		}
		spec.Process.Env = append(spec.Process.Env, append([]string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, env...)...)
		var nss []specs.LinuxNamespace
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				nss = append(nss, ns)
			}
		}
		spec.Linux.Namespaces = nss
		harness.WriteSpec(b, dir, spec)
		measurements = append(measurements, harness.EnclaveMeasurement(b, code, spec))
		return dir
	}
	variants := []struct{ name, bundle string }{
		{"plain", bundle("/bin/true", nil)},
		{"one-secret", bundle("/bin/true", nil, append(broker, "ENCLAVE_SECRETS=bench/key/db:/run/secrets/db")...)},
		{"sealed", bundle("/app/true", sealedBB, broker...)},
	}
	br := harness.Broker(b, verdictdtest.ProcessOptions{Listen: addr, SimRootPEM: []byte(simRoot), Identity: &identity,
		Policy:    harness.SimPolicy(measurements...),
		Resources: map[string][]byte{"bench/key/db": []byte("a 32-byte secret for the bench.."), "bench/key/exe": key},
		Flags:     []string{"--max-sessions", "1048576"}})
	for i, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				if res := r.Run(b, "run", "-b", v.bundle, fmt.Sprintf("startup-%d-%d", i, runs.Add(1))); res.Code != 0 {
					b.Fatalf("rune run %s: exit %d\n%s\n%s\nbroker:\n%s", v.name, res.Code, res.Stdout, res.Stderr, br.Log())
				}
			}
		})
	}
}
