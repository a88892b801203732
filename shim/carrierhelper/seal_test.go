package carrierhelper

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/native"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/sealed"
	"github.com/inclavare-containers/inclavare-go/verdictd"
)

const sealKID = "tenant/kek/app"

// startKeyProvider serves verdictd's real key provider (ocicrypt's gRPC protocol) on a unix
// socket with one KEK, sealKID, and returns its address and the KEK.
func startKeyProvider(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	kek := make([]byte, sealed.KeySize)
	rand.Read(kek)
	p := filepath.Join(dir, filepath.FromSlash(sealKID))
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := os.WriteFile(p, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := verdictd.OpenStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kp, err := verdictd.NewKeyProvider(verdictd.KeyProviderConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	network, address, err := verdictd.ParseKeyProviderAddr("unix://" + filepath.Join(t.TempDir(), "kp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := verdictd.ListenKeyProvider(network, address)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- kp.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	return verdictd.KeyProviderAddr(l), kek
}

// kbsEnv are broker settings (the broker itself is not contacted at conversion).
var kbsEnv = []string{"ENCLAVE_KBS_URL=https://127.0.0.1:1", "ENCLAVE_KBS_PIN=sha256:" + strings.Repeat("ab", 32)}

// dirNames lists a directory of the rootfs: a failed or finished seal leaves no file beside.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestConvertSeals: with RUNE_CARRIER_SEAL the entrypoint in the rootfs becomes a file sealed
// with a fresh content key wrapped by the broker's KEK (through verdictd's real key provider),
// with its mode; the manifest's measurement is the unsealed entrypoint's; the variable is gone
// from the workload's environment; a second container of the image (cache hit) is sealed too.
func TestConvertSeals(t *testing.T) {
	useRunelet(t)
	addr, kek := startKeyProvider(t)
	keyFile, trust := signingKey(t, t.TempDir())
	cfg := keyFileConfig(t, keyFile, "wasm", "native")
	cfg.Carriers.KeyProvider = addr
	for _, c := range []struct {
		carrier, entry string
		plain          []byte
		measure        func(env []string, s *enclave.Settings) string
	}{
		{"wasm", "/app/m.wasm", commandModule, func(env []string, s *enclave.Settings) string {
			return wasm.Measure(commandModule, wasm.Launch{Args: []string{"/app/m.wasm"}, Env: env, Dir: "/", Secrets: s.KBS.Measured()})
		}},
		{"native", "/bin/app", []byte("#!/bin/sh\necho native\n"), func(env []string, s *enclave.Settings) string {
			return native.Measure([]byte("#!/bin/sh\necho native\n"), native.Launch{Args: []string{"/bin/app"}, Env: env, Dir: "/", Secrets: s.KBS.Measured()})
		}},
	} {
		t.Run(c.carrier, func(t *testing.T) {
			for _, round := range []string{"miss", "hit"} {
				env := append([]string{"RUNE_CARRIER=" + c.carrier, "RUNE_CARRIER_SEAL=" + sealKID, "A=1"}, kbsEnv...)
				bundle := testBundle(t, []string{c.entry}, env, nil)
				res, err := Convert(context.Background(), Request{Bundle: bundle, ContainerID: "c", Namespace: "ns", Config: cfg, Image: testImage})
				if err != nil {
					t.Fatalf("Convert: %v", err)
				}
				if res.Cache != round || res.Sealed == nil || res.Sealed.KeyID != sealKID {
					t.Fatalf("result %+v", res)
				}
				sum := sha256.Sum256(c.plain)
				if res.Sealed.PlaintextSHA256 != hex.EncodeToString(sum[:]) {
					t.Fatalf("plaintext digest %s", res.Sealed.PlaintextSHA256)
				}
				file := filepath.Join(bundle, "rootfs", c.entry)
				data, _ := os.ReadFile(file)
				f, err := sealed.Parse(data)
				if err != nil || !f.Wrapped() || f.KeyID != sealKID {
					t.Fatalf("the entrypoint is not a wrapped sealed file for %s: %v", sealKID, err)
				}
				plain, err := sealed.Unseal(data, func(string) ([]byte, error) { return kek, nil })
				if err != nil || string(plain) != string(c.plain) {
					t.Fatalf("unseal with the KEK: %v", err)
				}
				if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o755 {
					t.Fatalf("mode %v", fi.Mode())
				}
				if names := dirNames(t, filepath.Dir(file)); len(names) != 1 {
					t.Fatalf("files beside the entrypoint: %v", names)
				}
				spec, _ := readBundleSpec(t, bundle)
				if slices.ContainsFunc(spec.Process.Env, func(kv string) bool { return strings.HasPrefix(kv, "RUNE_CARRIER") }) {
					t.Fatalf("the workload's environment keeps a carrier variable: %v", spec.Process.Env)
				}
				s, err := enclave.FromSpec(spec)
				if err != nil {
					t.Fatal(err)
				}
				mdata, _ := enclavemanifest.ReadFromBundle(bundle)
				m, err := enclavemanifest.Verify(mdata, trust)
				if err != nil {
					t.Fatal(err)
				}
				// The same container without RUNE_CARRIER_SEAL (not cached: no image).
				plainEnv := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "RUNE_CARRIER_SEAL=") })
				unsealed, err := Convert(context.Background(), Request{Bundle: testBundle(t, []string{c.entry}, plainEnv, nil), ContainerID: "c", Namespace: "ns", Config: cfg})
				if err != nil {
					t.Fatal(err)
				}
				if m.Measurement != unsealed.Measurement || unsealed.Cache != "off" {
					t.Fatalf("measurement %s, want the unsealed entrypoint's %s", m.Measurement, unsealed.Measurement)
				}
				if want := c.measure(m.Entrypoint.Env, s); m.Measurement != want {
					t.Fatalf("measurement %s, want %s by the documented definition", m.Measurement, want)
				}
			}
		})
	}
}

// TestConvertSealRefuses: a seal that cannot give a working container, or that fails midway,
// fails the conversion naming why, and the bundle and the rootfs stay as they were.
func TestConvertSealRefuses(t *testing.T) {
	useRunelet(t)
	addr, _ := startKeyProvider(t)
	keyFile, _ := signingKey(t, t.TempDir())
	tenantSealed, _ := sealed.Seal(commandModule, make([]byte, sealed.KeySize), "tenant/key/app")
	tests := []struct {
		name    string
		kp      string
		env     []string
		file    []byte // the entrypoint's bytes, if not the default module
		runelet string
		wantErr string
	}{
		{"no key provider", "", kbsEnv, nil, "", "names none (carriers.keyprovider)"},
		{"no key broker", addr, nil, nil, "", "names no key broker"},
		{"bad key id", addr, kbsEnv, nil, "", "RUNE_CARRIER_SEAL: resource"},
		{"already sealed", addr, kbsEnv, tenantSealed, "", "sealed already"},
		{"key provider unreachable", "unix://" + filepath.Join(t.TempDir(), "none.sock"), kbsEnv, nil, "", "wrap the content key with " + sealKID},
		{"unknown KEK", addr, kbsEnv, nil, "", "no such resource"},
		{"measure fails after sealing", addr, kbsEnv, nil, "/nonexistent/init-runelet", "measure /app/m.wasm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := keyFileConfig(t, keyFile, "wasm")
			cfg.Carriers.KeyProvider = tc.kp
			kid := sealKID
			switch tc.name {
			case "bad key id":
				kid = "tenant/../app"
			case "unknown KEK":
				kid = "tenant/kek/other"
			}
			if tc.runelet != "" {
				t.Setenv("RUNE_RUNELET", tc.runelet)
			}
			env := append([]string{"RUNE_CARRIER=wasm", "RUNE_CARRIER_SEAL=" + kid}, tc.env...)
			bundle := testBundle(t, []string{"/app/m.wasm"}, env, nil)
			file := filepath.Join(bundle, "rootfs", "app", "m.wasm")
			if tc.file != nil {
				os.WriteFile(file, tc.file, 0o755)
			}
			before, _ := os.ReadFile(file)
			var st1 os.FileInfo
			st1, _ = os.Stat(file)
			_, spec1 := readBundleSpec(t, bundle)
			_, err := Convert(context.Background(), Request{Bundle: bundle, ContainerID: "c", Namespace: "ns", Config: cfg, Image: testImage})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Convert: %v, want an error with %q", err, tc.wantErr)
			}
			after, _ := os.ReadFile(file)
			st2, _ := os.Stat(file)
			if string(after) != string(before) || !os.SameFile(st1, st2) {
				t.Fatal("the entrypoint changed")
			}
			if names := dirNames(t, filepath.Dir(file)); len(names) != 1 {
				t.Fatalf("files left beside the entrypoint: %v", names)
			}
			if _, spec2 := readBundleSpec(t, bundle); string(spec1) != string(spec2) {
				t.Fatal("config.json changed")
			}
			if _, err := os.Stat(enclavemanifest.BundlePath(bundle)); !os.IsNotExist(err) {
				t.Fatalf("manifest left: %v", err)
			}
		})
	}
}

// TestSealEntrypointStaysInRootfs: an entrypoint that is a symlink out of the rootfs resolves
// inside it (as the runtimes resolve it), and a non-regular file is refused.
func TestSealEntrypointStaysInRootfs(t *testing.T) {
	addr, _ := startKeyProvider(t)
	host := t.TempDir()
	outside := filepath.Join(host, "victim")
	os.WriteFile(outside, []byte("a host file"), 0o644)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "app"), 0o755)
	os.Symlink(outside, filepath.Join(rootfs, "app", "link"))
	os.Mkdir(filepath.Join(rootfs, "app", "dir"), 0o755)
	if _, err := sealEntrypoint(context.Background(), rootfs, "/app/link", "/", addr, sealKID); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a link out of the rootfs: %v", err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "a host file" {
		t.Fatal("the host file changed")
	}
	if _, err := sealEntrypoint(context.Background(), rootfs, "/app/dir", "/", addr, sealKID); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
	// A link inside the rootfs seals its target (what the runtime reads), not the link.
	os.WriteFile(filepath.Join(rootfs, "app", "real"), []byte("code"), 0o755)
	os.Symlink("/app/real", filepath.Join(rootfs, "app", "inner"))
	s, err := sealEntrypoint(context.Background(), rootfs, "/app/inner", "/", addr, sealKID)
	if err != nil {
		t.Fatal(err)
	}
	s.Commit()
	if fi, _ := os.Lstat(filepath.Join(rootfs, "app", "inner")); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link was replaced")
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "app", "real")); !sealed.IsSealed(b) {
		t.Fatal("the link's target was not sealed")
	}
}
