package security

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// Sealed workloads run only in the attested enclave (the key broker issue, part 3).
//
// Parties: the tenant seals its program (verdict seal) with a key only its broker holds and pins
// the measurement of the sealed file and its launch configuration; the image, the registry and the
// node operator see ciphertext. The node operator runs rune and could run the image without the
// broker settings, with another configuration (another measurement), or read the host's disks.

// sealedContainer makes a bundle whose entrypoint is data (the sealed program) with the broker at
// addr pinned, or without broker settings when addr is "". It returns the bundle and the
// measurement the tenant computes.
func sealedContainer(t *testing.T, c secretsCase, data []byte, addr, pin string, args ...string) (string, string) {
	t.Helper()
	dir, spec := harness.Bundle(t, append([]string{c.prog}, args...)...)
	harness.WriteRootfsFile(t, dir, strings.TrimPrefix(c.prog, "/"), data, 0o755)
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+c.runtime)
	var k *enclave.KBS
	if addr != "" {
		k = &enclave.KBS{URL: "https://" + addr, Pin: pin}
		spec.Process.Env = append(spec.Process.Env, "ENCLAVE_KBS_URL="+k.URL, "ENCLAVE_KBS_PIN="+pin)
	}
	withoutNetworkNamespace(spec)
	harness.WriteSpec(t, dir, spec)
	return dir, c.measure(data, spec, k)
}

// TestSealedWorkloadRunsOnlyInTheAttestedEnclave: a sealed program (native and wasm) runs, and
// runs again through rune exec, in the enclave whose measurement the tenant pinned; the same
// image with another configuration is refused at start with the broker's reason; without broker
// settings create fails naming the key; the plaintext is nowhere on the host afterwards, and rune
// compiled nothing of it into its code cache.
func TestSealedWorkloadRunsOnlyInTheAttestedEnclave(t *testing.T) {
	for _, c := range secretsCases {
		t.Run(c.name, func(t *testing.T) {
			r := enclaveRune(t)
			kb := planBroker(t, r)
			addr, pin := kb.addr, kb.pin

			plain, err := os.ReadFile(harness.BuildGo(t, "./tests/integration/testdata/enclaveprog", c.goos, c.goarch))
			if err != nil {
				t.Fatal(err)
			}
			data, key, marker := harness.SealedProgram(t, plain, c.goos == "wasip1", "repo/key/prog")
			good, m := sealedContainer(t, c, data, addr, pin, "args", "sealed-ok")
			long, m2 := sealedContainer(t, c, data, addr, pin, "sleep")
			b := kbsStart(t, kb.with(kbsSetup{
				policies:  func(string) string { return kbsPoliciesFor(m, m2) },
				resources: map[string]string{"repo/key/prog": string(key)}}))

			res := r.Run(t, "run", "-b", good, "sealed-ok-"+c.name)
			if res.Code != 0 || strings.TrimSpace(res.Stdout) != "|sealed-ok|" {
				t.Fatalf("the attested enclave did not run its sealed program: exit %d\n%s\n%s\nbroker:\n%s", res.Code, res.Stdout, res.Stderr, b.log())
			}
			id := "sealed-exec-" + c.name
			r.Must(t, "run", "-d", "-b", long, id)
			res = r.Run(t, "exec", id, c.prog, "args", "exec-ok")
			if res.Code != 0 || strings.TrimSpace(res.Stdout) != "|exec-ok|" {
				t.Fatalf("rune exec of the sealed program: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
			}
			r.Must(t, "delete", "-f", id)

			// The node operator runs the image with another argument: another measurement.
			bad, _ := sealedContainer(t, c, data, addr, pin, "args", "operator")
			id = "sealed-bad-" + c.name
			res = r.Run(t, "run", "-b", bad, id)
			if res.Code == 0 || !strings.Contains(res.Stderr, "PolicyDeny") || !strings.Contains(res.Stderr, "repo/key/prog") || strings.Contains(res.Stdout, "operator") {
				t.Fatalf("another measurement ran the sealed program: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
			}
			harness.AssertNothingLeft(t, r, id, bad)

			// Without broker settings there is no way to the key: create says so and leaves nothing.
			none, _ := sealedContainer(t, c, data, "", "", "args", "x")
			id = "sealed-none-" + c.name
			res = r.Run(t, "create", "-b", none, id)
			if res.Code == 0 || !strings.Contains(res.Stderr, "sealed with key repo/key/prog") || !strings.Contains(res.Stderr, "ENCLAVE_KBS_URL") {
				t.Fatalf("a sealed program without a broker: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
			}
			harness.AssertNothingLeft(t, r, id, none)

			cacheDir := runeEnv(r, "RUNE_CACHE_DIR")
			filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					t.Errorf("rune's code cache holds %s after only sealed programs ran", p)
				}
				return nil
			})
			harness.AssertBytesNowhere(t, marker, []string{good, long, bad, none, r.Root, cacheDir, "/run", "/var/lib/rune", "/dev/shm", os.TempDir()}, b.dir)
		})
	}
}

// runeEnv is the value of name in r's environment.
func runeEnv(r *harness.Runtime, name string) string {
	for _, kv := range r.Env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
