package carrierhelper

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// commandModule is the smallest WASI command module: one function, exported as _start,
// that does nothing.
var commandModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
	0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // export "_start" = func 0
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: empty body
}

var (
	runeletOnce sync.Once
	runeletDir  string
	runeletPath string
	runeletErr  error
)

// TestMain removes the init-runelet built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if runeletDir != "" {
		os.RemoveAll(runeletDir)
	}
	os.Exit(code)
}

// useRunelet points the conversion at a real init-runelet ($RUNE_RUNELET, as `make test`
// sets it, or one built from this repository once per test binary) and at a sim platform key
// of the test's own.
func useRunelet(t *testing.T) {
	t.Helper()
	p := os.Getenv("RUNE_RUNELET")
	if p == "" {
		runeletOnce.Do(func() {
			runeletDir, runeletErr = os.MkdirTemp("", "carrier-runelet")
			if runeletErr != nil {
				return
			}
			runeletPath = filepath.Join(runeletDir, "init-runelet")
			cmd := exec.Command("go", "build", "-o", runeletPath, "github.com/inclavare-containers/inclavare-go/cmd/init-runelet")
			if out, err := cmd.CombinedOutput(); err != nil {
				runeletErr = &buildError{err, string(out)}
			}
		})
		if runeletErr != nil {
			t.Fatalf("build init-runelet: %v", runeletErr)
		}
		p = runeletPath
	}
	t.Setenv("RUNE_RUNELET", p)
	t.Setenv("RUNE_SIM_PLATFORM_KEY", filepath.Join(t.TempDir(), "platform-key.pem"))
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// testBundle makes a bundle whose rootfs holds /bin/app (a file, for the native carrier)
// and /app/m.wasm (a WASI command module), with a process of args and env.
func testBundle(t *testing.T, args, env []string, annotations map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for name, data := range map[string][]byte{
		"bin/app":    []byte("#!/bin/sh\necho native\n"),
		"app/m.wasm": commandModule,
	} {
		p := filepath.Join(rootfs, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec := specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: "rootfs", Readonly: true},
		Process:     &specs.Process{Args: args, Env: env, Cwd: "/"},
		Hostname:    "carrier-test",
		Annotations: annotations,
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	// A member this build's runtime-spec does not know must survive the rewrite.
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["org.example.future"] = map[string]any{"kept": true}
	if data, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// signingKey writes a fresh ECDSA P-256 key and returns its file and a trust set holding it.
func signingKey(t *testing.T, dir string) (string, *enclavemanifest.Trust) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "signing-key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	trust := enclavemanifest.NewTrust()
	if _, err := trust.AddPublicKey(&key.PublicKey); err != nil {
		t.Fatal(err)
	}
	return p, trust
}

func keyFileConfig(t *testing.T, keyFile string, enabled ...string) *config.Config {
	t.Helper()
	c := config.Default()
	c.Signing.KeyFile = keyFile
	c.Carriers.Enabled = enabled
	c.Carriers.CacheDir = filepath.Join(t.TempDir(), "cache")
	return c
}

func readBundleSpec(t *testing.T, bundle string) (*specs.Spec, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := decodeSpec(raw)
	if err != nil {
		t.Fatal(err)
	}
	return spec, raw
}
