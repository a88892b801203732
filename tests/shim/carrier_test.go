package shim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/signservice"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// carrierSigner is a signing key for the carrier tests: its file, its signer and a trust file
// holding only its public key.
type carrierSigner struct {
	keyFile, trustFile string
	signer             *enclavemanifest.KeySigner
	trust              *enclavemanifest.Trust
}

func newCarrierSigner(t *testing.T, dir, name string) carrierSigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cs := carrierSigner{keyFile: filepath.Join(dir, name+"-key.pem"), trustFile: filepath.Join(dir, name+"-trust.pem")}
	writeFile(t, cs.keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	writeFile(t, cs.trustFile, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})))
	if cs.signer, err = enclavemanifest.NewKeySigner(key); err != nil {
		t.Fatal(err)
	}
	cs.trust = enclavemanifest.NewTrust()
	if _, err := cs.trust.AddPublicKey(&key.PublicKey); err != nil {
		t.Fatal(err)
	}
	return cs
}

// carrierConfig writes a shim configuration enabling the carriers with signing (a [signing]
// table), rune trusting trustFile, and cacheDir; it returns the file for --runtime-config-path.
func (s *suite) carrierConfig(t *testing.T, path, signing, trustFile, cacheDir string, enabled ...string) string {
	t.Helper()
	if len(enabled) == 0 {
		enabled = []string{"wasm", "native"}
	}
	writeFile(t, path, fmt.Sprintf("log_level = \"debug\"\n\n[rune]\npath = %q\nroot = %q\nmanifest_trust = %q\n\n%s\n\n[carriers]\nenabled = [\"%s\"]\ncache_dir = %q\n",
		s.rune, s.runeRoot, trustFile, signing, strings.Join(enabled, `", "`), cacheDir))
	return path
}

func carrierFlags(configPath, carrierName string) []string {
	return []string{"--runtime-config-path", configPath, "--env", "RUNE_CARRIER=" + carrierName}
}

// imageDigest is the digest containerd records for the suite's image.
func (s *suite) imageDigest(t *testing.T) string {
	t.Helper()
	for _, line := range strings.Split(s.MustCtr(t, "images", "ls"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == image {
			return f[2]
		}
	}
	t.Fatalf("image %s not listed by ctr images ls", image)
	return ""
}

// conversionLog waits for the shim's log line about converting container id and returns it.
func (s *suite) conversionLog(t *testing.T, id, msg string) string {
	t.Helper()
	var found string
	err := clients.WaitFor(30*time.Second, fmt.Sprintf("shim log %q for %s", msg, id), func() (bool, error) {
		data, err := os.ReadFile(s.daemon.LogPath)
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, msg) && (strings.Contains(l, "id="+id+" ") || strings.HasSuffix(l, "id="+id)) {
				found = l
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// assertNotCreated checks that a refused create left no task and no rune state.
func (s *suite) assertNotCreated(t *testing.T, id string) {
	t.Helper()
	if _, ok := s.Task(t, id); ok {
		t.Errorf("task %s exists after a refused create", id)
	}
	if _, err := os.Stat(filepath.Join(s.runeStateRoot(), id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rune state for %s after a refused create: %v", id, err)
	}
}

// TestCarrier converts ordinary images into enclave containers through the shim (RUNE_CARRIER)
// and checks what rune then runs, the manifest, the conversion cache and the failures.
func TestCarrier(t *testing.T) {
	s := startSuite(t)
	dir := t.TempDir()
	key := newCarrierSigner(t, dir, "local")
	cacheDir := filepath.Join(dir, "cache")
	cfg := s.carrierConfig(t, filepath.Join(dir, "carriers.toml"), fmt.Sprintf("[signing]\nkey_file = %q", key.keyFile), key.trustFile, cacheDir)
	digest := s.imageDigest(t)

	var first []byte // the manifest of the first wasm container
	t.Run("wasm carrier runs the image's module as an enclave", func(t *testing.T) {
		const id = "carrier-wasm-1"
		logPath := s.startDetached(t, carrierFlags(cfg, "wasm"), id, "/app/prog.wasm", "sleep")
		s.WaitTaskStatus(t, id, "RUNNING")
		// A .wasm file cannot be exec'd by Linux: its output means builtin:wasm runs it.
		clients.WaitFileLine(t, logPath, "sleeping")

		data, err := enclavemanifest.ReadFromBundle(s.bundle(id))
		if err != nil {
			t.Fatalf("manifest in the bundle: %v", err)
		}
		first = data
		m, err := enclavemanifest.Verify(data, key.trust)
		if err != nil {
			t.Fatalf("the bundle's manifest does not verify with the configured key: %v", err)
		}
		if m.Enclave.Type != "sim" || m.Enclave.RuntimePath != "builtin:wasm" || m.Entrypoint.Path != "/app/prog.wasm" {
			t.Errorf("manifest: %+v", m)
		}
		if m.Image == nil || m.Image.Reference != image || m.Image.Digest != digest {
			t.Errorf("manifest image %+v, want %s at %s (containerd's record)", m.Image, image, digest)
		}
		// The enclave itself reports its runtime and the signed measurement, with sim
		// evidence from this host's platform key.
		res, err := clients.Run(context.Background(), clientTimeout, nil, s.rune, "--root", s.runeStateRoot(), "attest", "--nonce", "6361727269657221", id)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("rune attest: %v %s", err, res)
		}
		var att struct {
			TEE, Runtime, Measurement string
			Evidence                  []byte
		}
		if err := json.Unmarshal([]byte(res.Stdout), &att); err != nil {
			t.Fatalf("rune attest output: %v\n%s", err, res.Stdout)
		}
		if att.TEE != "sim" || att.Runtime != "builtin:wasm" || att.Measurement != m.Measurement {
			t.Fatalf("rune attest: tee %s runtime %s measurement %s; want sim, builtin:wasm, %s (the manifest's)", att.TEE, att.Runtime, att.Measurement, m.Measurement)
		}
		cert, err := clients.Run(context.Background(), clientTimeout, nil, s.rune, "sim-platform-cert")
		if err != nil || cert.ExitCode != 0 {
			t.Fatalf("rune sim-platform-cert: %v %s", err, cert)
		}
		blk, _ := pem.Decode([]byte(cert.Stdout))
		if blk == nil {
			t.Fatalf("sim-platform-cert printed no PEM: %q", cert.Stdout)
		}
		platform, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		result, err := (&sim.Verifier{}).Verify(context.Background(), att.Evidence, attestation.Options{SimRoots: []*x509.Certificate{platform}})
		if err != nil || result.Measurements["measurement"] != m.Measurement {
			t.Fatalf("sim evidence: %v, measurements %v; want %s", err, result, m.Measurement)
		}
		// A process exec'd into the enclave runs in it too, without the enclave settings.
		out := s.CtrCmd(t, "task", "exec", "--exec-id", "env", "--fifo-dir", s.fifoDir, id, "/app/prog.wasm", "env", "ENCLAVE_TYPE")
		if out.ExitCode != 0 || out.Stdout != "unset\n" {
			t.Errorf("ENCLAVE_TYPE in an exec'd process's environment: %s", out)
		}
		// ctr passes the container's own environment, RUNE_CARRIER included, to exec'd processes:
		// it is an instruction to the shim, which keeps it from the workload.
		out = s.CtrCmd(t, "task", "exec", "--exec-id", "carrier-env", "--fifo-dir", s.fifoDir, id, "/app/prog.wasm", "env", "RUNE_CARRIER")
		if out.ExitCode != 0 || out.Stdout != "unset\n" {
			t.Errorf("RUNE_CARRIER in an exec'd process's environment: %s", out)
		}
		if line := s.conversionLog(t, id, "converted to an enclave container"); !strings.Contains(line, "cache=miss") {
			t.Errorf("first conversion of the image not a cache miss: %s", line)
		}
		if entries := cacheEntries(t, cacheDir); len(entries) != 1 {
			t.Errorf("cache entries after one conversion: %v", entries)
		}
	})

	t.Run("second container of the image is a cache hit", func(t *testing.T) {
		if first == nil {
			t.Fatal("needs the first conversion, which failed")
		}
		const id = "carrier-wasm-2"
		logPath := s.startDetached(t, carrierFlags(cfg, "wasm"), id, "/app/prog.wasm", "sleep")
		s.WaitTaskStatus(t, id, "RUNNING")
		clients.WaitFileLine(t, logPath, "sleeping")
		if line := s.conversionLog(t, id, "converted to an enclave container"); !strings.Contains(line, "cache=hit") {
			t.Errorf("second conversion of the image: %s, want cache=hit", line)
		}
		// ECDSA signatures are randomised: the same bytes mean the manifest was reused, not remade.
		data, err := enclavemanifest.ReadFromBundle(s.bundle(id))
		if err != nil || string(data) != string(first) {
			t.Errorf("second container's manifest differs from the cached one (%v)", err)
		}
		if entries := cacheEntries(t, cacheDir); len(entries) != 1 {
			t.Errorf("cache entries after a hit: %v", entries)
		}
	})

	t.Run("the carrier's instruction is not in the workload's environment", func(t *testing.T) {
		res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(cfg, "wasm")...), "carrier-env", "/app/prog.wasm", "env", "RUNE_CARRIER")...)
		if res.ExitCode != 0 || res.Stdout != "unset\n" {
			t.Fatalf("RUNE_CARRIER seen by the workload: %s", res)
		}
	})

	t.Run("CRI-style container: image from the io.kubernetes.cri.image-name annotation", func(t *testing.T) {
		// Like CRI's, this container records no image in containerd (its rootfs is a host
		// directory); the annotation names the image, as the user wrote it (normalized here).
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Fatal(err)
		}
		rootfs := t.TempDir()
		if err := os.MkdirAll(filepath.Join(rootfs, "app"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "app", "prog.wasm"), buildWasm(t, goBin, "./tests/integration/testdata/enclaveprog"), 0o755); err != nil {
			t.Fatal(err)
		}
		criCache := filepath.Join(dir, "cri-cache")
		ccfg := s.carrierConfig(t, filepath.Join(dir, "cri.toml"), fmt.Sprintf("[signing]\nkey_file = %q", key.keyFile), key.trustFile, criCache)
		short := strings.TrimPrefix(image, "docker.io/library/")
		for i, want := range []string{"cache=miss", "cache=hit"} {
			id := fmt.Sprintf("carrier-cri-%d", i)
			t.Cleanup(func() { s.Remove(t, id) })
			args := append([]string{"run", "--runtime", runtimeType, "--fifo-dir", s.fifoDir, "--rm", "--rootfs",
				"--annotation", "io.kubernetes.cri.image-name=" + short}, carrierFlags(ccfg, "wasm")...)
			res := s.CtrCmd(t, append(args, rootfs, id, "/app/prog.wasm", "exit", "0")...)
			if res.ExitCode != 0 || res.Stdout != "exit 0\n" {
				t.Fatalf("ctr run --rootfs with RUNE_CARRIER=wasm: %s", res)
			}
			line := s.conversionLog(t, id, "converted to an enclave container")
			if !strings.Contains(line, want) || !strings.Contains(line, "image_digest=\""+digest+"\"") || !strings.Contains(line, "image=\""+image+"\"") {
				t.Errorf("conversion %d: %s; want %s, image %s at %s", i, line, want, image, digest)
			}
		}
		// Without the annotation the image is unknown: converted all the same, not cached, and said why.
		const id = "carrier-no-image"
		t.Cleanup(func() { s.Remove(t, id) })
		args := append([]string{"run", "--runtime", runtimeType, "--fifo-dir", s.fifoDir, "--rm", "--rootfs"}, carrierFlags(ccfg, "wasm")...)
		res := s.CtrCmd(t, append(args, rootfs, id, "/app/prog.wasm", "exit", "0")...)
		if res.ExitCode != 0 || res.Stdout != "exit 0\n" {
			t.Fatalf("ctr run --rootfs without an image: %s", res)
		}
		if line := s.conversionLog(t, id, "converted to an enclave container"); !strings.Contains(line, "cache=off") || !strings.Contains(line, "records no image") {
			t.Errorf("conversion without an image: %s; want cache=off and the reason", line)
		}
		if entries := cacheEntries(t, criCache); len(entries) != 1 {
			t.Errorf("cache entries: %v, want the one of the annotated runs", entries)
		}
	})

	t.Run("native carrier", func(t *testing.T) {
		const id = "carrier-native"
		res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(cfg, "native")...), id, "echo", "native enclave")...)
		if res.ExitCode != 0 || res.Stdout != "native enclave\n" {
			t.Fatalf("ctr run with RUNE_CARRIER=native: %s", res)
		}
		if line := s.conversionLog(t, id, "converted to an enclave container"); !strings.Contains(line, `runtime="builtin:native"`) || !strings.Contains(line, "entrypoint=/bin/echo") {
			t.Errorf("native conversion log: %s", line)
		}
	})

	t.Run("unknown or disabled carrier", func(t *testing.T) {
		wasmOnly := s.carrierConfig(t, filepath.Join(dir, "wasm-only.toml"), fmt.Sprintf("[signing]\nkey_file = %q", key.keyFile), key.trustFile, cacheDir, "wasm")
		for i, tc := range []struct {
			flags []string
			want  string
		}{
			{carrierFlags(cfg, "occlum"), `RUNE_CARRIER="occlum": no such carrier in this shim (available: native, wasm)`},
			{carrierFlags(wasmOnly, "native"), `RUNE_CARRIER="native": carrier "native" is not enabled in the shim configuration (carriers.enabled: wasm)`},
			{carrierFlags(cfg, ""), "RUNE_CARRIER is empty"},
		} {
			id := fmt.Sprintf("carrier-refused-%d", i)
			t.Cleanup(func() { s.Remove(t, id) })
			res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, tc.flags...), id, "/app/prog.wasm", "exit", "0")...)
			if res.ExitCode == 0 || strings.Contains(res.Stdout, "exit 0") || !strings.Contains(res.Stderr, tc.want) {
				t.Errorf("ctr run %v: %s; want a failed create naming %q", tc.flags, res, tc.want)
			}
			s.assertNotCreated(t, id)
		}
	})

	t.Run("damaged cache entry is measured again", func(t *testing.T) {
		if first == nil {
			t.Fatal("needs the first conversion, which failed")
		}
		// The entry of the first conversion holds exactly its manifest.
		entry := ""
		for _, e := range cacheEntries(t, cacheDir) {
			if b, err := os.ReadFile(e); err == nil && string(b) == string(first) {
				entry = e
			}
		}
		if entry == "" {
			t.Fatalf("no cache entry holds the first conversion's manifest: %v", cacheEntries(t, cacheDir))
		}
		b := []byte(string(first))
		b[30] ^= 1
		if err := os.WriteFile(entry, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(cacheEntries(t, cacheDir))
		const id = "carrier-remade"
		logPath := s.startDetached(t, carrierFlags(cfg, "wasm"), id, "/app/prog.wasm", "sleep")
		clients.WaitFileLine(t, logPath, "sleeping")
		_ = s.conversionLog(t, id, "carrier cache entry discarded")
		if line := s.conversionLog(t, id, "converted to an enclave container"); !strings.Contains(line, "cache=miss") {
			t.Errorf("conversion after a damaged entry: %s, want cache=miss", line)
		}
		if entries := cacheEntries(t, cacheDir); len(entries) != before {
			t.Errorf("cache entries after the entry was remade: %v, want %d", entries, before)
		}
		remade, err := os.ReadFile(entry)
		if err != nil || string(remade) == string(b) || string(remade) == string(first) {
			t.Errorf("the damaged entry was not replaced by a new conversion (%v)", err)
		}
		if _, err := enclavemanifest.Verify(remade, key.trust); err != nil {
			t.Errorf("the remade entry: %v", err)
		}
	})

	t.Run("poisoned cache entry fails create", func(t *testing.T) {
		poisonCache := filepath.Join(dir, "poison-cache")
		pcfg := s.carrierConfig(t, filepath.Join(dir, "poison.toml"), fmt.Sprintf("[signing]\nkey_file = %q", key.keyFile), key.trustFile, poisonCache)
		res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(pcfg, "wasm")...), "carrier-poison-1", "/app/prog.wasm", "exit", "0")...)
		if res.ExitCode != 0 || res.Stdout != "exit 0\n" {
			t.Fatalf("first run: %s", res)
		}
		entries := cacheEntries(t, poisonCache)
		if len(entries) != 1 {
			t.Fatalf("cache entries: %v", entries)
		}
		data, err := os.ReadFile(entries[0])
		if err != nil {
			t.Fatal(err)
		}
		// A correctly signed entry for the same key, claiming another measurement: the cache
		// accepts it (it checks the signature, not the workload), rune must not.
		m, err := enclavemanifest.ParseUnverified(data)
		if err != nil {
			t.Fatal(err)
		}
		m.Measurement = strings.Repeat("0", 64)
		poisoned, err := enclavemanifest.Sign(context.Background(), *m, key.signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(entries[0], poisoned, 0o600); err != nil {
			t.Fatal(err)
		}
		const id = "carrier-poison-2"
		t.Cleanup(func() { s.Remove(t, id) })
		res = s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(pcfg, "wasm")...), id, "/app/prog.wasm", "exit", "0")...)
		want := "enclave manifest does not match the container: measurement: manifest " + strings.Repeat("0", 64)
		if res.ExitCode == 0 || strings.Contains(res.Stdout, "exit 0") || !strings.Contains(res.Stderr, want) {
			t.Fatalf("ctr run with a poisoned cache: %s; want a failed create naming %q", res, want)
		}
		s.assertNotCreated(t, id)
	})

	t.Run("signing service over mutual TLS", func(t *testing.T) {
		sdir := t.TempDir()
		ca := testpki.NewCA(t, "carrier-suite")
		serverCert, serverKey := ca.Server(t, "signer").Write(t, sdir)
		clientCert, clientKey := ca.Client(t, "shim").Write(t, sdir)
		caFile := ca.WriteCA(t, sdir)
		svcKey := newCarrierSigner(t, sdir, "service")
		h, err := signservice.NewHandler(svcKey.signer, nil)
		if err != nil {
			t.Fatal(err)
		}
		tlsConf, err := signservice.ServerTLSConfig(serverCert, serverKey, caFile)
		if err != nil {
			t.Fatal(err)
		}
		var signed atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				signed.Add(1)
			}
			h.ServeHTTP(w, r)
		}))
		srv.TLS = tlsConf
		srv.StartTLS()
		t.Cleanup(srv.Close)
		signing := fmt.Sprintf("[signing.service]\nurl = %q\nclient_cert = %q\nclient_key = %q\nca_cert = %q", srv.URL+"/v1/sign", clientCert, clientKey, caFile)
		// rune trusts the service's key only: a run proves the service signed.
		scfg := s.carrierConfig(t, filepath.Join(sdir, "service.toml"), signing, svcKey.trustFile, filepath.Join(sdir, "cache"))
		for i, want := range []int32{1, 1} {
			id := fmt.Sprintf("carrier-service-%d", i)
			res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(scfg, "wasm")...), id, "/app/prog.wasm", "exit", "0")...)
			if res.ExitCode != 0 || res.Stdout != "exit 0\n" {
				t.Fatalf("ctr run %d with a signing service: %s", i, res)
			}
			if got := signed.Load(); got != want {
				t.Errorf("after run %d the service signed %d times, want %d (the second is a cache hit)", i, got, want)
			}
		}
		// A service whose key rune does not trust: the manifest is refused at create.
		otherTrust := s.carrierConfig(t, filepath.Join(sdir, "other-trust.toml"), signing, key.trustFile, filepath.Join(sdir, "cache2"))
		const id = "carrier-service-untrusted"
		t.Cleanup(func() { s.Remove(t, id) })
		res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(otherTrust, "wasm")...), id, "/app/prog.wasm", "exit", "0")...)
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "untrusted signing key") {
			t.Fatalf("ctr run with a manifest signed by an untrusted service key: %s", res)
		}
		s.assertNotCreated(t, id)
	})

	t.Run("ephemeral key when the configuration asks for it", func(t *testing.T) {
		ecfg := s.carrierConfig(t, filepath.Join(dir, "ephemeral.toml"), "[signing]\nephemeral = true", key.trustFile, filepath.Join(dir, "eph-cache"))
		const id = "carrier-ephemeral"
		res := s.CtrCmd(t, s.runArgs(append([]string{"--rm"}, carrierFlags(ecfg, "wasm")...), id, "/app/prog.wasm", "exit", "0")...)
		if res.ExitCode != 0 || res.Stdout != "exit 0\n" {
			t.Fatalf("ctr run with an ephemeral signing key: %s", res)
		}
		_ = s.conversionLog(t, id, "ephemeral key")
		if entries := cacheEntries(t, filepath.Join(dir, "eph-cache")); len(entries) != 0 {
			t.Errorf("ephemeral manifests cached: %v", entries)
		}
	})
}
