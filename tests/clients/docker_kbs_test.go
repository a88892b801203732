package clients

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/layerkey"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

const dockerKBSImage = "rune-clients-kbs:latest"

// testDockerKBS: docker run --runtime rune with the broker settings as -e: the tenant's verdictd
// (the real binary, on loopback) releases a secret, and a sealed module's key, only to the enclave
// whose measurement its policy pins; another configuration of the same image fails docker run
// with the broker's reason; neither the secret nor the module's plaintext is on the host after.
func testDockerKBS(t *testing.T, s *dockerSuite) {
	files := enclaveImageFiles(t)
	sealedModule, key, marker := harness.SealedProgram(t, files["app/prog.wasm"], true, "tenant/key/prog")
	files["app/sealed.wasm"] = sealedModule
	if res, err := s.exec(context.Background(), enclaveImageTar(t, files), "import", "-", dockerKBSImage); err != nil || res.ExitCode != 0 {
		t.Fatalf("docker import: %v %s", err, res)
	}
	secret := []byte("docker-delivered secret " + hex.EncodeToString(marker[:8]))
	sum := sha256.Sum256(secret)

	// The broker's address and identity come first: the enclave names (and measures) its pin.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	simRoot, err := Run(context.Background(), clientTimeout, nil, s.runtime, "sim-platform-cert")
	if err != nil || simRoot.ExitCode != 0 {
		t.Fatalf("rune sim-platform-cert: %v %s", err, simRoot)
	}
	identity, leaf := verdictdtest.TLSIdentity(t)
	identity.Leaf = leaf
	pin := kbs.PinOf(leaf)

	// What docker makes of `-e` (its defaults PATH and HOSTNAME first, replaced in place, then
	// the rest in order): the tenant fixes both, so the final environment is known.
	envFlags := func(extra ...string) []string {
		env := append([]string{"PATH=/bin", "HOSTNAME=enclave", "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm",
			"ENCLAVE_KBS_URL=https://" + addr, "ENCLAVE_KBS_PIN=" + pin}, extra...)
		var flags []string
		for _, kv := range env {
			flags = append(flags, "-e", kv)
		}
		return flags
	}
	measure := func(code []byte, env []string, args ...string) string {
		spec := &specs.Spec{Process: &specs.Process{Args: args, Cwd: "/"}}
		for i := 1; i < len(env); i += 2 {
			spec.Process.Env = append(spec.Process.Env, env[i])
		}
		return harness.EnclaveMeasurement(t, code, spec)
	}
	secretEnv := envFlags("ENCLAVE_SECRETS=tenant/key/db:/run/secrets/db")
	sealedEnv := envFlags()
	secretArgs := []string{"/app/prog.wasm", "digest", "/run/secrets/db"}
	sealedArgs := []string{"/app/sealed.wasm", "args", "sealed-ok"}
	b := harness.Broker(t, verdictdtest.ProcessOptions{Listen: addr, SimRootPEM: []byte(simRoot.Stdout), Identity: &identity,
		Policy:    harness.SimPolicy(measure(files["app/prog.wasm"], secretEnv, secretArgs...), measure(sealedModule, sealedEnv, sealedArgs...)),
		Resources: map[string][]byte{"tenant/key/db": secret, "tenant/key/prog": key}})

	run := func(env []string, args ...string) Result {
		full := append(append(append([]string{"run", "--rm", "--runtime", dockerRuntimeName, "--network", "host"}, env...), dockerKBSImage), args...)
		res, err := s.exec(context.Background(), nil, full...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t.Run("secret", func(t *testing.T) {
		if res := run(secretEnv, secretArgs...); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != hex.EncodeToString(sum[:]) {
			t.Fatalf("docker run with a secret: %s\nbroker:\n%s", res, b.Log())
		}
	})
	t.Run("sealed module", func(t *testing.T) {
		if res := run(sealedEnv, sealedArgs...); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "|sealed-ok|" {
			t.Fatalf("docker run of a sealed module: %s\nbroker:\n%s", res, b.Log())
		}
	})
	t.Run("another configuration is refused", func(t *testing.T) {
		res := run(secretEnv, "/app/prog.wasm", "digest", "/run/secrets/db", "operator")
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "PolicyDeny") || strings.Contains(res.Stdout, hex.EncodeToString(sum[:])) {
			t.Fatalf("docker run with another measurement: %s", res)
		}
		res = run(sealedEnv, "/app/sealed.wasm", "args", "operator")
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "PolicyDeny") || strings.Contains(res.Stdout, "operator") {
			t.Fatalf("docker run of the sealed module with another measurement: %s", res)
		}
	})
	// A refused start leaves nothing behind: docker removed the containers, and the runtime has
	// none either (a failed start must end in a state the engine can delete).
	if res := s.docker(t, "ps", "-aq"); strings.TrimSpace(res.Stdout) != "" {
		t.Errorf("containers left: %s", res)
	}
	if list, err := Run(context.Background(), clientTimeout, nil, s.runtime, "--root", filepath.Join(s.execRoot, "runtime-runc", dockerNamespace), "list", "-q"); err != nil || strings.TrimSpace(list.Stdout) != "" {
		t.Errorf("the runtime still holds containers docker removed: %v %s", err, list)
	}
	harness.AssertBytesNowhere(t, secret, []string{s.dataRoot, s.execRoot, "/run", "/var/lib/rune", os.TempDir()}, b.Resource)
	harness.AssertBytesNowhere(t, marker, []string{s.dataRoot, s.execRoot, "/run", "/var/lib/rune", os.TempDir()})
}

// testDockerEncryptedLayers: the tenant encrypts the layer holding its module and data with its
// verdictd as ocicrypt key provider (skopeo copy --encryption-key provider:verdictd:<kid>),
// converts the image with `verdict enclave-layers` and hands it to Docker (skopeo copy to a
// docker-archive, docker load): Docker unpacks it like any image, the encrypted layer stays
// encrypted in the rootfs, and only the enclave the broker admits decrypts and runs it; another
// configuration is refused; no plaintext on the host.
func testDockerEncryptedLayers(t *testing.T, s *dockerSuite) {
	_, tools := Prerequisites(t, "skopeo", "busybox")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := enclaveImageFiles(t)
	marker := make([]byte, 32)
	rand.Read(marker)
	secretData := []byte("layer data " + hex.EncodeToString(marker))
	kek := make([]byte, layerkey.KEKSize)
	rand.Read(kek)
	simRoot, err := Run(context.Background(), clientTimeout, nil, s.runtime, "sim-platform-cert")
	if err != nil || simRoot.ExitCode != 0 {
		t.Fatalf("rune sim-platform-cert: %v %s", err, simRoot)
	}

	// The tenant's image: busybox, and a layer with the module and its data.
	base, err := BusyboxRootfsTar(tools["busybox"])
	if err != nil {
		t.Fatal(err)
	}
	app, err := WithFiles(nil, map[string][]byte{"app/prog.wasm": files["app/prog.wasm"], "app/data/secret.txt": secretData})
	if err != nil {
		t.Fatal(err)
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, l := range [][]byte{base, app} {
		d := digest.FromBytes(l)
		layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(l))})
		diffIDs = append(diffIDs, d)
	}
	work := t.TempDir()
	plain, enc, out := filepath.Join(work, "plain"), filepath.Join(work, "encrypted"), filepath.Join(work, "enclave")
	harness.WriteLayout(t, plain, [][]byte{base, app}, layers, diffIDs, ocispec.ImageConfig{})

	// Encrypted through the tenant's verdictd (its key provider; the serving broker below has
	// the same KEK and the policy for the result).
	wrapper := harness.Broker(t, verdictdtest.ProcessOptions{SimRootPEM: []byte(simRoot.Stdout), Policy: harness.SimPolicy(strings.Repeat("0", 64)),
		Resources: map[string][]byte{"tenant/key/image": kek}, Flags: []string{"--keyprovider-listen", "127.0.0.1:0"}})
	if msg, err := harness.SkopeoCopy(t, harness.KeyProviderConfig(t, wrapper.KeyProvider),
		"--encryption-key", "provider:verdictd:tenant/key/image", "--encrypt-layer", "1", "oci:"+plain, "oci:"+enc); err != nil {
		t.Fatalf("skopeo copy --encryption-key provider:verdictd: %v\n%s", err, msg)
	}
	encLayer := harness.OCILayoutManifest(t, enc).Layers[1]
	if !harness.IsEncryptedLayer(encLayer.MediaType) {
		t.Fatalf("layer 1 is %s, not encrypted", encLayer.MediaType)
	}
	conv, err := Run(context.Background(), clientTimeout, nil, filepath.Join(root, "bin", "verdict"), "enclave-layers", "--target", "/app", enc, out)
	if err != nil || conv.ExitCode != 0 || !strings.Contains(conv.Stdout, "ENCLAVE_LAYERS=/.inclavare/layers/0:/app") {
		t.Fatalf("verdict enclave-layers: %v %s", err, conv)
	}
	archive := filepath.Join(work, "image.tar")
	if res, err := Run(context.Background(), clientTimeout, nil, tools["skopeo"], "copy", "oci:"+out, "docker-archive:"+archive+":rune-clients-layers:latest"); err != nil || res.ExitCode != 0 {
		t.Fatalf("skopeo copy: %v %s", err, res)
	}
	if res, err := s.exec(context.Background(), nil, "load", "-i", archive); err != nil || res.ExitCode != 0 {
		t.Fatalf("docker load: %v %s", err, res)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	identity, leaf := verdictdtest.TLSIdentity(t)
	identity.Leaf = leaf
	pin := kbs.PinOf(leaf)
	env := []string{"-e", "PATH=/bin", "-e", "HOSTNAME=enclave", "-e", "ENCLAVE_TYPE=sim", "-e", "ENCLAVE_RUNTIME_PATH=builtin:wasm",
		"-e", "ENCLAVE_KBS_URL=https://" + addr, "-e", "ENCLAVE_KBS_PIN=" + pin}
	args := []string{"/app/prog.wasm", "digest", "/app/data/secret.txt"}
	// The tenant's measurement: the encrypted blob, where it is unpacked, the module's path in it.
	m := wasm.Measure(nil, wasm.Launch{Args: args, Env: []string{"PATH=/bin", "HOSTNAME=enclave"}, Dir: "/",
		Secrets: (&enclave.KBS{Pin: pin}).Measured(), Layers: []string{enclave.LayerMeasured(encLayer.Digest.Encoded(), "/app")}, CodeInLayer: "/app/prog.wasm"})
	b := harness.Broker(t, verdictdtest.ProcessOptions{Listen: addr, SimRootPEM: []byte(simRoot.Stdout), Identity: &identity,
		Policy: harness.SimPolicy(m), Resources: map[string][]byte{"tenant/key/image": kek}})

	run := func(args ...string) Result {
		full := append(append(append([]string{"run", "--rm", "--runtime", dockerRuntimeName, "--network", "host"}, env...), "rune-clients-layers:latest"), args...)
		res, err := s.exec(context.Background(), nil, full...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	want := sha256.Sum256(secretData)
	if res := run(args...); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != hex.EncodeToString(want[:]) {
		t.Fatalf("docker run of the encrypted layer's module: %s\nbroker:\n%s", res, b.Log())
	}
	if res := run(append(args, "operator")...); res.ExitCode == 0 || !strings.Contains(res.Stderr, "PolicyDeny") || strings.Contains(res.Stdout, hex.EncodeToString(want[:])) {
		t.Fatalf("another configuration: %s", res)
	}
	harness.AssertBytesNowhere(t, secretData, []string{s.dataRoot, s.execRoot, "/run", "/var/lib/rune"})
	harness.AssertBytesNowhere(t, secretData, []string{os.TempDir()}, plain)
}
