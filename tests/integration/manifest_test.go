package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/shim/carrierhelper"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// manifestKeys are a trusted signing key (in the trust file) and one nobody trusts.
type manifestKeys struct {
	trusted, untrusted string // PEM private key files
	trustFile          string
}

func newManifestKeys(t *testing.T) manifestKeys {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, key *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var keys [2]*ecdsa.PrivateKey
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	spki, err := x509.MarshalPKIXPublicKey(&keys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(dir, "manifest-trust.pem")
	if err := os.WriteFile(trust, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644); err != nil {
		t.Fatal(err)
	}
	return manifestKeys{trusted: write("trusted.pem", keys[0]), untrusted: write("untrusted.pem", keys[1]), trustFile: trust}
}

// convertBundle converts a bundle the way containerd-shim-rune-v2 does at create (the carrier
// package, with a signer of signing), leaving the manifest and the converted config.json in it.
func convertBundle(t *testing.T, r *runtimeBin, bundle string, signing config.Signing, carrierName string) {
	t.Helper()
	cfg := config.Default()
	cfg.Signing = signing
	cfg.Carriers.Enabled = []string{carrierName}
	cfg.Carriers.CacheDir = filepath.Join(t.TempDir(), "cache")
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(quiet))
	if _, err := carrierhelper.Convert(ctx, carrierhelper.Request{Bundle: bundle, ContainerID: "t", Namespace: "t", Config: cfg, RunePath: r.path}); err != nil {
		t.Fatalf("convert %s: %v", bundle, err)
	}
}

// carrierBundle is an enclave test bundle converted by carrier c (wasm: /app/prog.wasm;
// native: /app/prog) running "exit 0", signed by keyFile.
func carrierBundle(t *testing.T, r *runtimeBin, c string, signing config.Signing) string {
	t.Helper()
	prog := "/app/prog.wasm"
	if c == "native" {
		prog = "/app/prog"
	}
	dir, _ := enclaveBundle(t, []string{"RUNE_CARRIER=" + c}, prog, "exit", "0")
	convertBundle(t, r, dir, signing, c)
	return dir
}

// editEnvelope rewrites a member of the bundle's manifest envelope after signing.
func editEnvelope(t *testing.T, bundle string, edit func(payload, sig []byte) ([]byte, []byte)) {
	t.Helper()
	data, err := os.ReadFile(enclavemanifest.BundlePath(bundle))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload   string `json:"payload"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signature)
	if err != nil {
		t.Fatal(err)
	}
	payload, sig = edit(payload, sig)
	env.Payload, env.Signature = base64.StdEncoding.EncodeToString(payload), base64.StdEncoding.EncodeToString(sig)
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(enclavemanifest.BundlePath(bundle), out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// editSpec changes a converted bundle's config.json.
func editSpec(t *testing.T, bundle string, edit func(*specs.Spec)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	edit(&s)
	writeSpec(t, bundle, &s)
}

// TestEnclaveManifest: rune create verifies a bundle's enclave manifest and compares it with its
// own measurement of the workload; every way of breaking the chain fails create with a message
// naming the problem and leaves nothing behind.
func TestEnclaveManifest(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	keys := newManifestKeys(t)
	trusted := config.Signing{KeyFile: keys.trusted}
	trustFlag := []string{"--manifest-trust", keys.trustFile}

	t.Run("valid manifest runs", func(t *testing.T) {
		for _, c := range []string{"wasm", "native"} {
			dir := carrierBundle(t, r, c, trusted)
			res := r.run(t, append(trustFlag, "run", "-b", dir, "manifest-ok")...)
			if res.code != 0 || res.stdout != "exit 0\n" {
				t.Fatalf("%s: run with a valid manifest: code %d stdout %q stderr %s", c, res.code, res.stdout, res.stderr)
			}
			assertNothingLeft(t, r, "manifest-ok", dir)
		}
	})
	t.Run("trust file from the environment, as the shim passes it", func(t *testing.T) {
		dir := carrierBundle(t, r, "wasm", trusted)
		t.Setenv("RUNE_MANIFEST_TRUST", keys.trustFile)
		res := r.run(t, "run", "-b", dir, "manifest-env")
		if res.code != 0 || res.stdout != "exit 0\n" {
			t.Fatalf("run with RUNE_MANIFEST_TRUST: code %d stdout %q stderr %s", res.code, res.stdout, res.stderr)
		}
	})
	t.Run("ephemeral key with allowance runs", func(t *testing.T) {
		dir := carrierBundle(t, r, "wasm", config.Signing{Ephemeral: true})
		res := r.run(t, append(trustFlag, "--manifest-allow-ephemeral", "run", "-b", dir, "manifest-eph")...)
		if res.code != 0 || res.stdout != "exit 0\n" {
			t.Fatalf("run with an allowed ephemeral manifest: code %d stdout %q stderr %s", res.code, res.stdout, res.stderr)
		}
	})

	cases := []struct {
		name  string
		make  func(t *testing.T) string // returns the bundle
		flags []string                  // global flags besides --manifest-trust
		want  string
	}{
		{
			name: "tampered payload byte",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				editEnvelope(t, dir, func(p, s []byte) ([]byte, []byte) {
					// A different, equally well-formed measurement digit.
					i := strings.Index(string(p), `"measurement":"`) + len(`"measurement":"`)
					if p[i] == '0' {
						p[i] = '1'
					} else {
						p[i] = '0'
					}
					return p, s
				})
				return dir
			},
			want: "enclave manifest signature does not verify",
		},
		{
			name: "wrong signature",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				editEnvelope(t, dir, func(p, s []byte) ([]byte, []byte) { s[len(s)/2] ^= 0x40; return p, s })
				return dir
			},
			want: "enclave manifest signature does not verify",
		},
		{
			name: "signature of another manifest",
			make: func(t *testing.T) string {
				other := carrierBundle(t, r, "native", trusted)
				dir := carrierBundle(t, r, "wasm", trusted)
				var otherSig []byte
				editEnvelope(t, other, func(p, s []byte) ([]byte, []byte) { otherSig = s; return p, s })
				editEnvelope(t, dir, func(p, _ []byte) ([]byte, []byte) { return p, otherSig })
				return dir
			},
			want: "enclave manifest signature does not verify",
		},
		{
			name: "untrusted key",
			make: func(t *testing.T) string { return carrierBundle(t, r, "wasm", config.Signing{KeyFile: keys.untrusted}) },
			want: "untrusted signing key: key id sha256:",
		},
		{
			name: "ephemeral key without allowance",
			make: func(t *testing.T) string { return carrierBundle(t, r, "wasm", config.Signing{Ephemeral: true}) },
			want: "manifest signed with an ephemeral key",
		},
		{
			name: "wasm workload modified after signing",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				// A custom section: still a valid module, other bytes.
				f, err := os.OpenFile(filepath.Join(dir, "rootfs/app/prog.wasm"), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte{0x00, 0x03, 0x01, 'x', 'y'})
				f.Close()
				return dir
			},
			want: "enclave manifest does not match the container: measurement: manifest ",
		},
		{
			name: "native workload modified after signing",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "native", trusted)
				f, err := os.OpenFile(filepath.Join(dir, "rootfs/app/prog"), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte{0})
				f.Close()
				return dir
			},
			want: "enclave manifest does not match the container: measurement: manifest ",
		},
		{
			name: "settings changed after signing",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				editSpec(t, dir, func(s *specs.Spec) { s.Annotations["enclave.runtime.loglevel"] = "debug" })
				return dir
			},
			want: `enclave log level: manifest "info", container "debug"`,
		},
		{
			name: "runtime args changed after signing",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				editSpec(t, dir, func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "ENCLAVE_RUNTIME_ARGS=memory=64M") })
				return dir
			},
			want: `enclave runtime args: manifest [], container ["memory=64M"]`,
		},
		{
			name: "environment changed after signing",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				editSpec(t, dir, func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "INJECTED=1") })
				return dir
			},
			want: "entrypoint env: manifest has ",
		},
		{
			name: "manifest removed when required",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				if err := os.Remove(enclavemanifest.BundlePath(dir)); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: "an enclave manifest is required (annotation io.inclavare.enclave-manifest.required), but ",
		},
		{
			name: "no manifest with --require-manifest",
			make: func(t *testing.T) string {
				dir, _ := enclaveBundle(t, simWasm(), "/app/prog.wasm", "exit", "0")
				return dir
			},
			flags: []string{"--require-manifest"},
			want:  "an enclave manifest is required (--require-manifest), but ",
		},
		{
			name: "manifest for an enclave in an ordinary container",
			make: func(t *testing.T) string {
				src := carrierBundle(t, r, "wasm", trusted)
				dir, _ := bundle(t, "true")
				data, err := os.ReadFile(enclavemanifest.BundlePath(src))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(enclavemanifest.BundlePath(dir), data, 0o600); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: "describes an enclave (builtin:wasm on sim), but the container has no enclave settings",
		},
		{
			name: "manifest is a symbolic link",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				p := enclavemanifest.BundlePath(dir)
				if err := os.Rename(p, p+".real"); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(p+".real", p); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: "is a symbolic link",
		},
		{
			name:  "named trust file missing",
			make:  func(t *testing.T) string { return carrierBundle(t, r, "wasm", trusted) },
			flags: []string{"--manifest-trust", "/nonexistent/manifest-trust.pem"},
			want:  "--manifest-trust: enclave manifest trust: open /nonexistent/manifest-trust.pem: no such file or directory",
		},
		{
			name: "bad requirement annotation",
			make: func(t *testing.T) string {
				dir := carrierBundle(t, r, "wasm", trusted)
				editSpec(t, dir, func(s *specs.Spec) { s.Annotations[enclavemanifest.AnnotationRequired] = "yes" })
				return dir
			},
			want: `annotation io.inclavare.enclave-manifest.required="yes": want true or false`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.make(t)
			const id = "manifest-bad"
			args := append(append(append([]string{}, trustFlag...), tc.flags...), "create", "-b", dir, id)
			res := r.run(t, args...)
			if res.code != 1 || !strings.Contains(unquote(res.stderr), tc.want) {
				t.Errorf("create: code %d stderr %q; want 1 and %q", res.code, res.stderr, tc.want)
			}
			if strings.Contains(res.stderr, "panic:") || strings.Contains(res.stderr, "goroutine ") {
				t.Errorf("rune crashed: %s", res.stderr)
			}
			assertNothingLeft(t, r, id, dir)
			// rune run fails the same way.
			args[len(args)-4] = "run"
			if res := r.run(t, args...); res.code == 0 || !strings.Contains(unquote(res.stderr), tc.want) {
				t.Errorf("run: code %d stderr %q; want a failure naming %q", res.code, res.stderr, tc.want)
			}
			assertNothingLeft(t, r, id, dir)
		})
	}
}
