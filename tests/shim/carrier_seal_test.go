package shim

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ociconfig "github.com/containers/ocicrypt/config"
	kpconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	ocikp "github.com/containers/ocicrypt/keywrap/keyprovider"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/sealed"
	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

const sealImage = "docker.io/library/rune-shim-seal:latest"

// sealKEK is the broker's key-encryption key the carrier seals for.
const sealKEK = "tenant/kek/app"

// testCarrierSeal: RUNE_CARRIER_SEAL through containerd, the real shim, rune and the real
// verdictd (its KBS for the enclave, its ocicrypt key provider for the carrier). A wasm and a
// native carrier container run from entrypoints sealed at create; the rootfs then holds wrapped
// sealed files for the KEK, and the manifests hold the measurement the tenant computes from the
// plaintext. Attacks by the node operator and refusals fail with their reasons.
func testCarrierSeal(t *testing.T, s *suite) {
	_, tools := clients.Prerequisites(t, "busybox", "go")
	prog := buildWasm(t, tools["go"], "./tests/integration/testdata/enclaveprog")
	bb, err := os.ReadFile(tools["busybox"])
	if err != nil {
		t.Fatal(err)
	}
	s.importImage(t, tools["busybox"], sealImage, map[string][]byte{"app/prog.wasm": prog, "app/echo": bb})

	addr, leaf, brokerOpts := s.planBroker(t)
	dir := t.TempDir()
	signer := newCarrierSigner(t, dir, "seal")
	withKP, noKP := filepath.Join(dir, "with-kp.toml"), filepath.Join(dir, "no-kp.toml")
	kbsFlags := []string{"--net-host", "--env", "ENCLAVE_KBS_URL=https://" + addr, "--env", "ENCLAVE_KBS_PIN=" + kbs.PinOf(leaf)}
	wasmFlags := func(config string, withKBS bool) []string {
		f := append(carrierFlags(config, "wasm"), "--env", "RUNE_CARRIER_SEAL="+sealKEK)
		if withKBS {
			f = append(f, kbsFlags...)
		}
		return f
	}
	nativeFlags := append(append(carrierFlags(withKP, "native"), "--env", "RUNE_CARRIER_SEAL="+sealKEK), kbsFlags...)

	// create makes the container (no task yet) and returns the measurement of code as the tenant
	// computes it: the final OCI spec without the carrier's variables, the carrier's settings.
	create := func(id string, flags []string, code []byte, runtime string, cmd ...string) string {
		args := append(append([]string{"containers", "create", "--runtime", runtimeType}, flags...), sealImage, id)
		s.MustCtr(t, append(args, cmd...)...)
		t.Cleanup(func() { s.Remove(t, id) })
		var info struct{ Spec *specs.Spec }
		if err := json.Unmarshal([]byte(s.MustCtr(t, "containers", "info", id)), &info); err != nil || info.Spec == nil || info.Spec.Process == nil {
			t.Fatalf("ctr containers info %s: %v", id, err)
		}
		sp := info.Spec
		sp.Process.Env = slices.DeleteFunc(sp.Process.Env, func(kv string) bool { return strings.HasPrefix(kv, "RUNE_CARRIER") })
		sp.Process.Env = append(sp.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+runtime)
		return harness.EnclaveMeasurement(t, code, sp)
	}
	mWasm := create("seal-wasm", wasmFlags(withKP, true), prog, "builtin:wasm", "/app/prog.wasm", "args", "seal-ok")
	mNative := create("seal-native", nativeFlags, bb, "builtin:native", "/app/echo", "native-seal-ok")
	mLie := create("seal-swap-lie", wasmFlags(withKP, true), prog, "builtin:wasm", "/app/prog.wasm", "args", "approved")
	mTrue := create("seal-swap-true", wasmFlags(withKP, true), prog, "builtin:wasm", "/app/prog.wasm", "args", "approved-too")
	mPlain := create("seal-swap-plain", wasmFlags(withKP, true), prog, "builtin:wasm", "/app/prog.wasm", "args", "approved-plain")
	create("seal-denied", wasmFlags(withKP, true), prog, "builtin:wasm", "/app/prog.wasm", "args", "not-in-policy")
	create("seal-no-kp", wasmFlags(noKP, true), prog, "builtin:wasm", "/app/prog.wasm", "args", "x")
	create("seal-no-kbs", append(wasmFlags(withKP, false), "--net-host"), prog, "builtin:wasm", "/app/prog.wasm", "args", "x")
	create("plain-wasm", append(carrierFlags(withKP, "wasm"), kbsFlags...), prog, "builtin:wasm", "/app/prog.wasm", "args", "plain")

	kek := make([]byte, sealed.KeySize)
	rand.Read(kek)
	brokerOpts.Policy = harness.SimPolicy(mWasm, mNative, mLie, mTrue, mPlain)
	brokerOpts.Resources = map[string][]byte{sealKEK: kek}
	brokerOpts.Flags = []string{"--keyprovider-listen", "127.0.0.1:0"}
	b := harness.Broker(t, brokerOpts)
	signing := "[signing]\nkey_file = " + `"` + signer.keyFile + `"`
	s.carrierConfig(t, noKP, signing, signer.trustFile, filepath.Join(dir, "cache"))
	s.carrierConfig(t, withKP, signing, signer.trustFile, filepath.Join(dir, "cache"))
	f, err := os.OpenFile(withKP, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("keyprovider = \"" + b.KeyProvider + "\"\n")
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	api := dialTasks(t, s.sock)
	// newTask creates the task (the shim converts, seals and runs rune create) and returns it,
	// its output and how long the create took.
	newTask := func(id string) (*rawTask, time.Duration, error) {
		start := time.Now()
		task, err := api.create(ctx, t, id, s.fifoDir)
		return task, time.Since(start), err
	}
	rootfsFile := func(id, p string) string { return filepath.Join(s.bundle(id), "rootfs", p) }
	// run starts a created task and returns its exit status and output.
	run := func(task *rawTask) (uint32, string, error) {
		return task.run(ctx, t, clientTimeout)
	}
	checkSealed := func(id, p string, plain []byte, m string) {
		t.Helper()
		data, err := os.ReadFile(rootfsFile(id, p))
		if err != nil {
			t.Fatal(err)
		}
		f, err := sealed.Parse(data)
		sum := sha256.Sum256(plain)
		if err != nil || !f.Wrapped() || f.KeyID != sealKEK || f.PlaintextSHA256 != hex.EncodeToString(sum[:]) || bytes.Contains(data, plain[len(plain)/2:len(plain)/2+64]) {
			t.Fatalf("%s in %s's rootfs is not sealed for %s with the plaintext's digest: %v", p, id, sealKEK, err)
		}
		md, err := enclavemanifest.ReadFromBundle(s.bundle(id))
		if err != nil {
			t.Fatal(err)
		}
		man, err := enclavemanifest.ParseUnverified(md)
		if err != nil || man.Measurement != m {
			t.Fatalf("%s: manifest measurement %v (%v), want the unsealed plaintext's %s", id, man, err, m)
		}
	}

	var sealedCreate, plainCreate time.Duration
	t.Run("wasm", func(t *testing.T) {
		task, took, err := newTask("seal-wasm")
		if err != nil {
			t.Fatalf("create: %v\nbroker:\n%s", err, b.Log())
		}
		sealedCreate = took
		checkSealed("seal-wasm", "app/prog.wasm", prog, mWasm)
		code, stdout, err := run(task)
		if err != nil || code != 0 || strings.TrimSpace(stdout) != "|seal-ok|" {
			t.Fatalf("start: %v, exit %d, output %q\nbroker:\n%s", err, code, stdout, b.Log())
		}
		s.conversionLog(t, "seal-wasm", "entrypoint sealed for the key broker")
	})
	t.Run("native", func(t *testing.T) {
		task, _, err := newTask("seal-native")
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		checkSealed("seal-native", "app/echo", bb, mNative)
		if fi, err := os.Stat(rootfsFile("seal-native", "app/echo")); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Fatalf("the sealed executable lost its mode: %v", err)
		}
		code, stdout, err := run(task)
		if err != nil || code != 0 || strings.TrimSpace(stdout) != "native-seal-ok" {
			t.Fatalf("start: %v, exit %d, output %q\nbroker:\n%s", err, code, stdout, b.Log())
		}
	})
	t.Run("create time without sealing", func(t *testing.T) {
		task, took, err := newTask("plain-wasm")
		if err != nil {
			t.Fatal(err)
		}
		plainCreate = took
		run(task)
		t.Logf("create (conversion + rune create) of a wasm carrier container: sealed %v, not sealed %v", sealedCreate.Round(time.Millisecond), plainCreate.Round(time.Millisecond))
	})

	// wrap has the broker's key provider wrap a content key of the node's own, as the node
	// operator can (the key provider wraps for whoever reaches it).
	wrap := func(dek []byte) []byte {
		kw := ocikp.NewKeyWrapper("verdictd", kpconfig.KeyProviderAttrs{Grpc: b.KeyProvider})
		w, err := kw.WrapKeys(&ociconfig.EncryptConfig{Parameters: map[string][][]byte{"verdictd": {[]byte(sealKEK)}}}, dek)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// evil is another program: the approved module with a custom section, printing what it
	// would (the test checks that nothing was printed). A valid module: refused for what it is,
	// not for being malformed.
	evil := append(bytes.Clone(prog), 0, 6, 4, 'e', 'v', 'i', 'l', 1)

	// Party: node operator. Attack: after create, replace the sealed entrypoint with its own
	// program sealed under its own content key (wrapped by the real KEK through the key
	// provider), stating the approved program's digest in the header (so that the measurement
	// taken from the header would still match). Expected: start fails, the plaintext's digest
	// does not match the header's (checked after authenticated decryption); nothing ran.
	t.Run("attack: node seals its own program with a lying header", func(t *testing.T) {
		task, _, err := newTask("seal-swap-lie")
		if err != nil {
			t.Fatal(err)
		}
		dek := make([]byte, sealed.KeySize)
		rand.Read(dek)
		sum := sha256.Sum256(prog)
		lying := sealAs(t, evil, dek, sealed.Header{KeyID: sealKEK, PlaintextSHA256: hex.EncodeToString(sum[:]),
			PlaintextSize: int64(len(evil)), WrappedKey: base64.StdEncoding.EncodeToString(wrap(dek))})
		if err := os.WriteFile(rootfsFile("seal-swap-lie", "app/prog.wasm"), lying, 0o755); err != nil {
			t.Fatal(err)
		}
		code, stdout, err := run(task)
		if err == nil || !strings.Contains(err.Error(), "does not match the header's digest and size") || strings.Contains(stdout, "approved") {
			t.Fatalf("start of a swapped sealed module: %v (exit %d, output %q)", err, code, stdout)
		}
	})
	// Party: node operator. Attack: as above, with the true digest of its own program in the
	// header. Expected: the runtime refuses a sealed file whose code digest is not the one it
	// measured (and attested), before fetching any key; nothing ran.
	t.Run("attack: node seals its own program with its true digest", func(t *testing.T) {
		task, _, err := newTask("seal-swap-true")
		if err != nil {
			t.Fatal(err)
		}
		dek := make([]byte, sealed.KeySize)
		rand.Read(dek)
		data, err := sealed.SealWrapped(evil, dek, sealKEK, wrap(dek))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(rootfsFile("seal-swap-true", "app/prog.wasm"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		code, stdout, err := run(task)
		if err == nil || !strings.Contains(err.Error(), "changed since it was measured") || strings.Contains(stdout, "approved") {
			t.Fatalf("start of a swapped sealed module: %v (exit %d, output %q)", err, code, stdout)
		}
	})
	// Party: node operator. Attack: after create, replace the sealed entrypoint with its own
	// program in the clear: it needs no key, so no digest check on the way to a key sees it,
	// and it would run under the attested measurement (free to fetch the tenant's keys).
	// Expected: the runtime refuses a plain file where it measured a sealed one; nothing ran.
	t.Run("attack: node swaps in its own program in the clear", func(t *testing.T) {
		task, _, err := newTask("seal-swap-plain")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(rootfsFile("seal-swap-plain", "app/prog.wasm"), evil, 0o755); err != nil {
			t.Fatal(err)
		}
		code, stdout, err := run(task)
		if err == nil || !strings.Contains(err.Error(), "was sealed when it was measured and is not now") || strings.Contains(stdout, "approved-plain") {
			t.Fatalf("start of a sealed module swapped for a plain one: %v (exit %d, output %q)", err, code, stdout)
		}
	})
	// The broker's policy does not admit this launch: start fails with the broker's reason.
	t.Run("broker refuses", func(t *testing.T) {
		task, _, err := newTask("seal-denied")
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, err := run(task)
		if err == nil || !strings.Contains(err.Error(), "PolicyDeny") || strings.Contains(stdout, "not-in-policy") {
			t.Fatalf("start refused by the broker: %v (exit %d, output %q)", err, code, stdout)
		}
	})
	// Refusals at create: nothing is left (no task, no rune state, the image's rootfs not sealed).
	for id, want := range map[string]string{
		"seal-no-kp":  "names none (carriers.keyprovider)",
		"seal-no-kbs": "names no key broker",
	} {
		t.Run("refused: "+id, func(t *testing.T) {
			_, _, err := newTask(id)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("create: %v, want an error with %q", err, want)
			}
			s.assertNotCreated(t, id)
		})
	}
}

// sealAs seals plaintext under dek with header h as given (digest and size as stated): the node
// operator's own sealer, which may lie; package sealed never writes such a file.
func sealAs(t *testing.T, plaintext, dek []byte, h sealed.Header) []byte {
	t.Helper()
	nonce := make([]byte, 12)
	rand.Read(nonce)
	h.Alg, h.Nonce = sealed.Alg, base64.StdEncoding.EncodeToString(nonce)
	hdr, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	aad := append(binary.BigEndian.AppendUint32([]byte(sealed.Magic), uint32(len(hdr))), hdr...)
	block, _ := aes.NewCipher(dek)
	aead, _ := cipher.NewGCM(block)
	return aead.Seal(aad, nonce, plaintext, aad)
}

// lockedBuf is a bytes.Buffer written by cio's copy goroutine and read by the test.
type lockedBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
