package security

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/native"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/layerkey"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// Encrypted image layers are decrypted only inside the attested enclave (the key broker issue,
// part 4).
//
// Parties: the tenant encrypts the layer holding its program and data with ocicrypt (as skopeo
// does), the layer key wrapped by its verdictd under a key-encryption key only the broker holds,
// and pins the measurement, which covers the encrypted blob and where it is unpacked. The node
// operator holds the image (ciphertext), runs rune, and could run it with another configuration
// or swap the blob between create and start.

// layerContainerDesc makes a bundle (write puts the encrypted layer at /layers/0, unpacked at
// /app) whose entrypoint, under /app in the layer, runs with args; it returns the bundle and the
// measurement the tenant computes from the blob and the configuration.
func layerContainerDesc(t *testing.T, c secretsCase, blob []byte, write func(bundle string), addr, pin string, args ...string) (string, string) {
	t.Helper()
	prog := c.prog // /app/…: in the layer
	dir, spec := harness.Bundle(t, append([]string{prog}, args...)...)
	if write != nil {
		write(dir)
	}
	k := &enclave.KBS{URL: "https://" + addr, Pin: pin}
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+c.runtime,
		"ENCLAVE_KBS_URL="+k.URL, "ENCLAVE_KBS_PIN="+pin, "ENCLAVE_LAYERS=/layers/0:/app")
	withoutNetworkNamespace(spec)
	harness.WriteSpec(t, dir, spec)
	sum := sha256.Sum256(blob)
	layers := []string{enclave.LayerMeasured(hex.EncodeToString(sum[:]), "/app")}
	env := workloadEnv(spec)
	if c.goos == "wasip1" {
		return dir, wasm.Measure(nil, wasm.Launch{Args: spec.Process.Args, Env: env, Dir: spec.Process.Cwd, Secrets: k.Measured(), Layers: layers, CodeInLayer: prog})
	}
	return dir, native.Measure(nil, native.Launch{Args: spec.Process.Args, Env: env, Dir: spec.Process.Cwd, Secrets: k.Measured(), Layers: layers, CodeInLayer: prog})
}

// TestEncryptedLayerOnlyInTheAttestedEnclave: the program and its data, in an encrypted layer,
// run in the enclave whose measurement the tenant pinned (native and wasm); the same image with
// another configuration is refused at start with the broker's reason; a blob swapped between
// create and start for another layer the tenant encrypted (same keys) is refused and leaves
// nothing unpacked; no plaintext of the layer is on the host afterwards.
func TestEncryptedLayerOnlyInTheAttestedEnclave(t *testing.T) {
	for _, c := range secretsCases {
		t.Run(c.name, func(t *testing.T) {
			r := enclaveRune(t)
			kb := planBroker(t, r)
			addr, pin := kb.addr, kb.pin
			prog, err := os.ReadFile(harness.BuildGo(t, "./tests/integration/testdata/enclaveprog", c.goos, c.goarch))
			if err != nil {
				t.Fatal(err)
			}
			marker := make([]byte, 64)
			rand.Read(marker)
			kek := make([]byte, layerkey.KEKSize)
			rand.Read(kek)
			files := map[string][]byte{c.prog[1:]: prog, "app/data/secret.txt": []byte(hex.EncodeToString(marker))}
			blob, desc, _ := harness.EncryptedLayer(t, files, "tenant/key/image", kek)
			otherBlob, otherDesc, _ := harness.EncryptedLayer(t, map[string][]byte{c.prog[1:]: prog, "app/data/secret.txt": []byte("an older release")}, "tenant/key/image", kek)
			writeLayer := func(bundle string) { harness.WriteLayerDir(t, bundle, "layers/0", blob, desc) }
			good, m := layerContainerDesc(t, c, blob, writeLayer, addr, pin, "digest", "/app/data/secret.txt")
			swapped, m2 := layerContainerDesc(t, c, blob, writeLayer, addr, pin, "digest", "/app/data/secret.txt", "x")
			b := kbsStart(t, kb.with(kbsSetup{
				policies:  func(string) string { return kbsPoliciesFor(m, m2) },
				resources: map[string]string{"tenant/key/image": string(kek)}}))

			want := sha256.Sum256([]byte(hex.EncodeToString(marker)))
			res := r.Run(t, "run", "-b", good, "layer-ok-"+c.name)
			if res.Code != 0 || strings.TrimSpace(res.Stdout) != hex.EncodeToString(want[:]) {
				t.Fatalf("the attested enclave did not run the encrypted layer's program: exit %d\n%s\n%s\nbroker:\n%s", res.Code, res.Stdout, res.Stderr, b.log())
			}

			// The node operator swaps the layer after create (the measurement was taken) for
			// another layer the tenant encrypted with the same keys, blob and descriptor, or the
			// blob alone: the enclave sees the change and unpacks nothing.
			for i, swap := range []struct {
				write func()
				want  string
			}{
				{func() { harness.WriteLayerDir(t, swapped, "layers/0", otherBlob, otherDesc) }, "the measured blob is sha256:"},
				{func() { harness.WriteRootfsFile(t, swapped, "layers/0/blob", otherBlob, 0o644) }, "not the measured"},
			} {
				harness.WriteLayerDir(t, swapped, "layers/0", blob, desc)
				id := fmt.Sprintf("layer-swapped-%s-%d", c.name, i)
				r.Must(t, "create", "-b", swapped, id)
				swap.write()
				res = r.Run(t, "start", id)
				if res.Code == 0 || !strings.Contains(res.Stderr, swap.want) {
					t.Fatalf("a swapped layer: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
				}
				r.Must(t, "delete", id)
			}

			// Another configuration of the same image: another measurement, no key.
			bad, _ := layerContainerDesc(t, c, blob, writeLayer, addr, pin, "digest", "/app/data/secret.txt", "operator")
			id := "layer-bad-" + c.name
			res = r.Run(t, "run", "-b", bad, id)
			if res.Code == 0 || !strings.Contains(res.Stderr, "PolicyDeny") || strings.Contains(res.Stdout, hex.EncodeToString(want[:])) {
				t.Fatalf("another configuration unpacked the layer: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
			}
			harness.AssertNothingLeft(t, r, id, bad)
			harness.AssertBytesNowhere(t, []byte(hex.EncodeToString(marker)), []string{good, swapped, bad, r.Root, "/run", "/var/lib/rune", "/dev/shm", os.TempDir()}, filepath.Join(b.dir))
		})
	}
}
