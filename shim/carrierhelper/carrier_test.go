package carrierhelper

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/native"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/signservice"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/testpki"
	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

var testImage = &enclavemanifest.Image{Reference: "registry.example/app:1", Digest: "sha256:" + strings.Repeat("ab", 32)}

func TestRequested(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		want    string
		wantOK  bool
		wantErr string
	}{
		{name: "none", env: []string{"PATH=/bin", "RUNE_CARRIERX=wasm"}},
		{name: "one", env: []string{"PATH=/bin", "RUNE_CARRIER=wasm"}, want: "wasm", wantOK: true},
		{name: "twice alike", env: []string{"RUNE_CARRIER=native", "RUNE_CARRIER=native"}, want: "native", wantOK: true},
		{name: "twice different", env: []string{"RUNE_CARRIER=native", "RUNE_CARRIER=wasm"}, wantErr: `RUNE_CARRIER is set twice, to "native" and "wasm"`},
		{name: "empty", env: []string{"RUNE_CARRIER="}, wantErr: "RUNE_CARRIER is empty: name a carrier (available: native, wasm)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := requested(&specs.Spec{Process: &specs.Process{Env: tc.env}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("requested: %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || ok != tc.wantOK {
				t.Fatalf("requested = %q, %v, %v; want %q, %v", got, ok, err, tc.want, tc.wantOK)
			}
		})
	}
	if _, ok, err := requested(&specs.Spec{}); ok || err != nil {
		t.Fatalf("a spec without a process requests no carrier: %v %v", ok, err)
	}
}

func TestChoose(t *testing.T) {
	cfg := config.Default()
	cfg.Carriers.Enabled = []string{"wasm"}
	if c, err := choose("wasm", cfg); err != nil || c.RuntimePath != "builtin:wasm" || c.DefaultType != "sim" {
		t.Fatalf("choose(wasm) = %+v, %v", c, err)
	}
	for name, want := range map[string]string{
		"native": `RUNE_CARRIER="native": carrier "native" is not enabled in the shim configuration (carriers.enabled: wasm)`,
		"occlum": `RUNE_CARRIER="occlum": no such carrier in this shim (available: native, wasm)`,
	} {
		if _, err := choose(name, cfg); err == nil || err.Error() != want {
			t.Errorf("choose(%s) = %v, want %q", name, err, want)
		}
	}
	cfg.Carriers.Enabled = nil
	if _, err := choose("wasm", cfg); err == nil || !strings.Contains(err.Error(), "(carriers.enabled: none)") {
		t.Errorf("choose with nothing enabled = %v", err)
	}
	if got := Names(); !slices.Equal(got, []string{"native", "wasm"}) {
		t.Errorf("Names() = %v", got)
	}
}

func TestPlan(t *testing.T) {
	wasmC, _ := carrierclient.Lookup("wasm")
	nativeC, _ := carrierclient.Lookup("native")
	tests := []struct {
		name     string
		c        Carrier
		args     []string
		env      []string
		ann      map[string]string
		want     enclave.Settings
		wantEP   enclavemanifest.Entrypoint
		wantErr  string
		extraAnn map[string]string // annotations kept from the container
	}{
		{
			name: "wasm defaults", c: wasmC, args: []string{"/app/m.wasm", "-v"}, env: []string{"PATH=/bin", "RUNE_CARRIER=wasm", "A=1"},
			want:   enclave.Settings{Type: "sim", RuntimePath: "builtin:wasm", LogLevel: "info"},
			wantEP: enclavemanifest.Entrypoint{Path: "/app/m.wasm", Args: []string{"/app/m.wasm", "-v"}, Env: []string{"PATH=/bin", "A=1"}, Cwd: "/"},
		},
		{
			name: "the container's own settings are kept and leave the environment", c: wasmC, args: []string{"/app/m.wasm"},
			env:      []string{"RUNE_CARRIER=wasm", "ENCLAVE_RUNTIME_ARGS=memory=64M", "B=2", "ENCLAVE_RUNTIME_LOGLEVEL=debug"},
			ann:      map[string]string{"enclave.attestation.ra_type": "dcap", "org.example/x": "y"},
			want:     enclave.Settings{Type: "sim", RuntimePath: "builtin:wasm", Args: []string{"memory=64M"}, LogLevel: "debug", RAType: "dcap"},
			wantEP:   enclavemanifest.Entrypoint{Path: "/app/m.wasm", Args: []string{"/app/m.wasm"}, Env: []string{"B=2"}, Cwd: "/"},
			extraAnn: map[string]string{"org.example/x": "y"},
		},
		{
			name: "the container's TEE type wins over the default", c: wasmC, args: []string{"/app/m.wasm"},
			env: []string{"RUNE_CARRIER=wasm"}, ann: map[string]string{"enclave.type": "tdx"},
			want:   enclave.Settings{Type: "tdx", RuntimePath: "builtin:wasm", LogLevel: "info"},
			wantEP: enclavemanifest.Entrypoint{Path: "/app/m.wasm", Args: []string{"/app/m.wasm"}, Env: []string{}, Cwd: "/"},
		},
		{
			name: "the carrier's own runtime named again", c: wasmC, args: []string{"/app/m.wasm"},
			env:    []string{"RUNE_CARRIER=wasm", "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm"},
			want:   enclave.Settings{Type: "sim", RuntimePath: "builtin:wasm", LogLevel: "info"},
			wantEP: enclavemanifest.Entrypoint{Path: "/app/m.wasm", Args: []string{"/app/m.wasm"}, Env: []string{}, Cwd: "/"},
		},
		{
			name: "native resolves the program on PATH", c: nativeC, args: []string{"app", "x"}, env: []string{"PATH=/usr/bin:/bin", "RUNE_CARRIER=native"},
			want:   enclave.Settings{Type: "sim", RuntimePath: "builtin:native", LogLevel: "info"},
			wantEP: enclavemanifest.Entrypoint{Path: "/bin/app", Args: []string{"app", "x"}, Env: []string{"PATH=/usr/bin:/bin"}, Cwd: "/"},
		},
		{
			name: "another runtime is refused", c: wasmC, args: []string{"/app/m.wasm"}, env: []string{"RUNE_CARRIER=wasm", "ENCLAVE_RUNTIME_PATH=builtin:native"},
			wantErr: `the container sets the enclave runtime "builtin:native", but this carrier runs builtin:wasm`,
		},
		{
			name: "another runtime by annotation is refused", c: nativeC, args: []string{"app"}, env: []string{"PATH=/bin"}, ann: map[string]string{"enclave.runtime.path": "/opt/libpal.so"},
			wantErr: `the container sets the enclave runtime "/opt/libpal.so", but this carrier runs builtin:native`,
		},
		{
			name: "native outside sim", c: nativeC, args: []string{"/bin/app"}, env: []string{"ENCLAVE_TYPE=tdx"},
			wantErr: "builtin:native provides no isolation",
		},
		{
			name: "bad log level", c: wasmC, args: []string{"/app/m.wasm"}, env: []string{"ENCLAVE_RUNTIME_LOGLEVEL=loud"},
			wantErr: `invalid ENCLAVE_RUNTIME_LOGLEVEL "loud"`,
		},
		{name: "no args", c: wasmC, args: nil, wantErr: "process.args must not be empty"},
		{name: "missing entrypoint", c: wasmC, args: []string{"/app/missing.wasm"}, wantErr: "/app/missing.wasm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bundle := testBundle(t, tc.args, tc.env, tc.ann)
			sp, err := readSpec(bundle)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := readBundleSpec(t, bundle)
			p, err := planFor(tc.c, sp.spec, bundle)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("plan: %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if !reflect.DeepEqual(*p.settings, tc.want) {
				t.Errorf("settings = %+v, want %+v", *p.settings, tc.want)
			}
			if !reflect.DeepEqual(p.entrypoint, tc.wantEP) {
				t.Errorf("entrypoint = %+v, want %+v", p.entrypoint, tc.wantEP)
			}
			if p.rootfs != filepath.Join(bundle, "rootfs") {
				t.Errorf("rootfs = %s", p.rootfs)
			}
			for k, v := range tc.extraAnn {
				if p.annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q kept", k, p.annotations[k], v)
				}
			}
			if p.annotations[enclavemanifest.AnnotationRequired] != "true" || p.annotations[AnnotationCarrier] != tc.c.Name {
				t.Errorf("annotations %v lack the manifest requirement or the carrier", p.annotations)
			}
			// plan decides; it changes neither the spec it was given nor the bundle.
			if !reflect.DeepEqual(sp.spec, before) {
				t.Errorf("plan changed the spec it read:\n%+v\n%+v", sp.spec.Process, before.Process)
			}
		})
	}
}

func TestRewriteSpec(t *testing.T) {
	raw := []byte(`{"ociVersion":"1.0.2","process":{"args":["a"],"env":["X=<&>","RUNE_CARRIER=wasm"],"cwd":"/","x-new":[1,2]},"root":{"path":"rootfs"},"annotations":{"k":"v"},"x-top":{"n":null}}`)
	out, err := rewriteSpec(raw, []string{"X=<&>"}, map[string]string{"k": "v", "enclave.type": "sim"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"annotations":{"enclave.type":"sim","k":"v"},"ociVersion":"1.0.2","process":{"args":["a"],"cwd":"/","env":["X=<&>"],"x-new":[1,2]},"root":{"path":"rootfs"},"x-top":{"n":null}}`
	if string(out) != want {
		t.Fatalf("rewriteSpec =\n%s\nwant\n%s", out, want)
	}
	for _, bad := range []string{`[]`, `{"process":3}`, `{"process":null}`, `{`} {
		if _, err := rewriteSpec([]byte(bad), nil, nil); err == nil {
			t.Errorf("rewriteSpec(%s) succeeded", bad)
		}
	}
}

func TestConvert(t *testing.T) {
	useRunelet(t)
	dir := t.TempDir()
	keyFile, trust := signingKey(t, dir)
	cfg := keyFileConfig(t, keyFile, "wasm", "native")
	ctx := context.Background()
	args := []string{"/app/m.wasm", "hello"}
	env := []string{"PATH=/bin", "RUNE_CARRIER=wasm", "ENCLAVE_RUNTIME_ARGS=memory=64M", "A=1"}

	convert := func(t *testing.T, bundle string, img *enclavemanifest.Image) (*Result, *enclavemanifest.Manifest, []byte) {
		t.Helper()
		res, err := Convert(ctx, Request{Bundle: bundle, ContainerID: "c", Namespace: "ns", Config: cfg, Image: img})
		if err != nil {
			t.Fatalf("Convert: %v", err)
		}
		data, err := enclavemanifest.ReadFromBundle(bundle)
		if err != nil {
			t.Fatal(err)
		}
		m, err := enclavemanifest.Verify(data, trust)
		if err != nil {
			t.Fatalf("the bundle's manifest does not verify with the configured key: %v", err)
		}
		return res, m, data
	}

	first := testBundle(t, args, env, map[string]string{"org.example/x": "y"})
	res, m, data1 := convert(t, first, testImage)
	if res.Cache != "miss" || res.Carrier != "wasm" || res.Ephemeral {
		t.Fatalf("first conversion: %+v", res)
	}
	// The measurement is the runtime's, recomputed here from the documented definition.
	wantMeasurement := wasm.Measure(commandModule, wasm.Launch{Args: args, Env: []string{"PATH=/bin", "A=1"}, Dir: "/", MemoryLimit: 64 << 20})
	if m.Measurement != wantMeasurement || res.Measurement != wantMeasurement {
		t.Errorf("measurement %s (result %s), want %s", m.Measurement, res.Measurement, wantMeasurement)
	}
	wantEnclave := enclavemanifest.Enclave{Type: "sim", RuntimePath: "builtin:wasm", Args: []string{"memory=64M"}, LogLevel: "info", RAType: ""}
	if !reflect.DeepEqual(m.Enclave, wantEnclave) {
		t.Errorf("manifest enclave = %+v, want %+v", m.Enclave, wantEnclave)
	}
	wantEP := enclavemanifest.Entrypoint{Path: "/app/m.wasm", Args: args, Env: []string{"PATH=/bin", "A=1"}, Cwd: "/"}
	if !reflect.DeepEqual(m.Entrypoint, wantEP) {
		t.Errorf("manifest entrypoint = %+v, want %+v", m.Entrypoint, wantEP)
	}
	if m.Image == nil || *m.Image != *testImage {
		t.Errorf("manifest image = %+v", m.Image)
	}
	// config.json now says, to rune, exactly what was measured.
	spec, raw := readBundleSpec(t, first)
	if !strings.Contains(string(raw), `"org.example.future":{"kept":true}`) {
		t.Errorf("a member unknown to runtime-spec was lost: %s", raw)
	}
	if spec.Annotations["org.example/x"] != "y" || spec.Annotations[enclavemanifest.AnnotationRequired] != "true" || spec.Annotations[AnnotationCarrier] != "wasm" {
		t.Errorf("annotations after conversion: %v", spec.Annotations)
	}
	s, err := enclave.FromSpec(spec)
	if err != nil || s == nil {
		t.Fatalf("converted spec: %v %v", s, err)
	}
	if err := m.Matches(s, wantMeasurement); err != nil {
		t.Errorf("converted spec vs manifest: %v", err)
	}
	if err := m.MatchesEntrypoint(enclavemanifest.Entrypoint{Path: "/app/m.wasm", Args: spec.Process.Args, Env: spec.Process.Env, Cwd: spec.Process.Cwd}); err != nil {
		t.Errorf("converted process vs manifest: %v", err)
	}
	if fi, err := os.Stat(enclavemanifest.BundlePath(first)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("manifest file: %v %v", fi, err)
	}

	t.Run("second container of the image is a cache hit", func(t *testing.T) {
		res, _, data := convert(t, testBundle(t, args, env, nil), testImage)
		if res.Cache != "hit" || string(data) != string(data1) {
			t.Fatalf("second conversion: cache %q, same manifest %v", res.Cache, string(data) == string(data1))
		}
	})
	t.Run("another entrypoint is another entry", func(t *testing.T) {
		res, m, _ := convert(t, testBundle(t, []string{"/app/m.wasm", "bye"}, env, nil), testImage)
		if res.Cache != "miss" || m.Measurement == wantMeasurement {
			t.Fatalf("conversion with other args: %+v", res)
		}
	})
	t.Run("a damaged cache entry is discarded and measured again", func(t *testing.T) {
		entries, _ := filepath.Glob(filepath.Join(cfg.Carriers.CacheDir, "*.json"))
		if len(entries) != 2 {
			t.Fatalf("cache entries %v, want 2", entries)
		}
		for _, e := range entries {
			b, err := os.ReadFile(e)
			if err != nil {
				t.Fatal(err)
			}
			b[20] ^= 1
			if err := os.WriteFile(e, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		res, m, _ := convert(t, testBundle(t, args, env, nil), testImage)
		if res.Cache != "miss" || m.Measurement != wantMeasurement {
			t.Fatalf("conversion after damage: %+v", res)
		}
	})
	t.Run("no image digest: converted, not cached", func(t *testing.T) {
		before, _ := filepath.Glob(filepath.Join(cfg.Carriers.CacheDir, "*.json"))
		res, m, _ := convert(t, testBundle(t, args, env, nil), nil)
		if res.Cache != "off" || !strings.Contains(res.CacheNote, "the image digest is unknown: containerd's address is unknown") || m.Image != nil {
			t.Fatalf("conversion without an image: %+v", res)
		}
		after, _ := filepath.Glob(filepath.Join(cfg.Carriers.CacheDir, "*.json"))
		if len(after) != len(before) {
			t.Fatalf("cache entries %v after a conversion without image, before %v", after, before)
		}
	})
	t.Run("native", func(t *testing.T) {
		nargs := []string{"app", "-x"}
		res, m, _ := convert(t, testBundle(t, nargs, []string{"PATH=/bin", "RUNE_CARRIER=native"}, nil), testImage)
		want := native.Measure([]byte("#!/bin/sh\necho native\n"), native.Launch{Args: nargs, Env: []string{"PATH=/bin"}, Dir: "/"})
		if res.Cache != "miss" || m.Measurement != want || m.Enclave.RuntimePath != "builtin:native" || m.Entrypoint.Path != "/bin/app" {
			t.Fatalf("native conversion: %+v, manifest %+v, want measurement %s", res, m, want)
		}
	})
	t.Run("ephemeral key", func(t *testing.T) {
		ecfg := config.Default()
		ecfg.Signing.Ephemeral = true
		ecfg.Carriers.Enabled = []string{"wasm"}
		ecfg.Carriers.CacheDir = filepath.Join(t.TempDir(), "cache")
		bundle := testBundle(t, args, env, nil)
		res, err := Convert(ctx, Request{Bundle: bundle, ContainerID: "c", Namespace: "ns", Config: ecfg, Image: testImage})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Ephemeral {
			t.Errorf("result %+v does not say the key is ephemeral", res)
		}
		data, err := enclavemanifest.ReadFromBundle(bundle)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enclavemanifest.Verify(data, enclavemanifest.NewTrust()); err == nil || !strings.Contains(err.Error(), "ephemeral") {
			t.Fatalf("ephemeral manifest without allowance: %v", err)
		}
		allow := enclavemanifest.NewTrust()
		allow.AllowEphemeral = true
		if m, err := enclavemanifest.Verify(data, allow); err != nil || !m.Signer.Ephemeral {
			t.Fatalf("ephemeral manifest with allowance: %v", err)
		}
		if !res.Ephemeral || res.Cache != "off" || !strings.Contains(res.CacheNote, "ephemeral") {
			t.Fatalf("ephemeral conversion: %+v", res)
		}
		if entries, _ := filepath.Glob(filepath.Join(ecfg.Carriers.CacheDir, "*.json")); len(entries) != 0 {
			t.Fatalf("ephemeral manifests cached: %v", entries)
		}
	})
}

// TestConvertRefuses: a conversion that fails leaves the bundle exactly as it was.
func TestConvertRefuses(t *testing.T) {
	useRunelet(t)
	dir := t.TempDir()
	keyFile, _ := signingKey(t, dir)
	other := filepath.Join(dir, "not-a-key.pem")
	os.WriteFile(other, []byte("no key here\n"), 0o600)
	tests := []struct {
		name    string
		args    []string
		env     []string
		cfg     *config.Config
		wantErr string
	}{
		{"not enabled", []string{"/app/m.wasm"}, []string{"RUNE_CARRIER=native"}, keyFileConfig(t, keyFile, "wasm"), `carrier "native" is not enabled`},
		{"unknown carrier", []string{"/app/m.wasm"}, []string{"RUNE_CARRIER=occlum"}, keyFileConfig(t, keyFile, "wasm"), `no such carrier in this shim`},
		{"invalid wasm module", []string{"/bin/app"}, []string{"RUNE_CARRIER=wasm"}, keyFileConfig(t, keyFile, "wasm"), "carrier wasm: measure /bin/app: wasm module /bin/app: invalid wasm module"},
		{"unreadable key", []string{"/app/m.wasm"}, []string{"RUNE_CARRIER=wasm"}, keyFileConfig(t, other, "wasm"), "signing key " + other},
		{"conflicting runtime", []string{"/app/m.wasm"}, []string{"RUNE_CARRIER=wasm", "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, keyFileConfig(t, keyFile, "wasm"), "but this carrier runs builtin:wasm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bundle := testBundle(t, tc.args, tc.env, nil)
			_, before := readBundleSpec(t, bundle)
			_, err := Convert(context.Background(), Request{Bundle: bundle, ContainerID: "c", Namespace: "ns", Config: tc.cfg, Image: testImage})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Convert: %v, want error %q", err, tc.wantErr)
			}
			if _, after := readBundleSpec(t, bundle); string(after) != string(before) {
				t.Errorf("config.json changed by a failed conversion")
			}
			if _, err := os.Stat(enclavemanifest.BundlePath(bundle)); !os.IsNotExist(err) {
				t.Errorf("manifest left by a failed conversion: %v", err)
			}
			if entries, _ := os.ReadDir(tc.cfg.Carriers.CacheDir); len(entries) != 0 {
				t.Errorf("cache entries left by a failed conversion: %v", entries)
			}
		})
	}
	t.Run("no carrier asked for", func(t *testing.T) {
		bundle := testBundle(t, []string{"/app/m.wasm"}, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, nil)
		_, before := readBundleSpec(t, bundle)
		res, err := Convert(context.Background(), Request{Bundle: bundle, Config: keyFileConfig(t, keyFile)})
		if res != nil || err != nil {
			t.Fatalf("Convert without RUNE_CARRIER = %+v, %v; want nothing done", res, err)
		}
		if _, after := readBundleSpec(t, bundle); string(after) != string(before) {
			t.Errorf("config.json changed without a carrier")
		}
	})
}

// TestConvertSigningService signs through a signing service over loopback mutual TLS.
func TestConvertSigningService(t *testing.T) {
	useRunelet(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "carrier-test")
	serverCert, serverKey := ca.Server(t, "signer").Write(t, dir)
	clientCert, clientKey := ca.Client(t, "shim").Write(t, dir)
	caFile := ca.WriteCA(t, dir)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := enclavemanifest.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := signservice.NewHandler(ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := signservice.ServerTLSConfig(serverCert, serverKey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = tlsConf
	srv.StartTLS()
	t.Cleanup(srv.Close)

	cfg := config.Default()
	cfg.Signing.Service = &config.SigningService{URL: srv.URL + "/v1/sign", ClientCert: clientCert, ClientKey: clientKey, CACert: caFile, Timeout: config.Duration(config.DefaultSigningTimeout)}
	cfg.Carriers.Enabled = []string{"wasm"}
	cfg.Carriers.CacheDir = filepath.Join(t.TempDir(), "cache")
	trust := enclavemanifest.NewTrust()
	if _, err := trust.AddPublicKey(&key.PublicKey); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"miss", "hit"} {
		bundle := testBundle(t, []string{"/app/m.wasm"}, []string{"RUNE_CARRIER=wasm"}, nil)
		res, err := Convert(context.Background(), Request{Bundle: bundle, Config: cfg, Image: testImage})
		if err != nil {
			t.Fatalf("conversion %d: %v", i, err)
		}
		data, err := enclavemanifest.ReadFromBundle(bundle)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enclavemanifest.Verify(data, trust); err != nil || res.Cache != want {
			t.Fatalf("conversion %d: cache %q (want %s), verify: %v", i, res.Cache, want, err)
		}
	}

	t.Run("a client the service does not know gets nothing", func(t *testing.T) {
		stranger := testpki.NewCA(t, "stranger")
		cert, key := stranger.Client(t, "intruder").Write(t, t.TempDir())
		bad := *cfg
		svc := *cfg.Signing.Service
		svc.ClientCert, svc.ClientKey = cert, key
		bad.Signing.Service = &svc
		bundle := testBundle(t, []string{"/app/m.wasm"}, []string{"RUNE_CARRIER=wasm"}, nil)
		if _, err := Convert(context.Background(), Request{Bundle: bundle, Config: &bad, Image: testImage}); err == nil {
			t.Fatal("a client with a foreign certificate got a conversion")
		}
		if _, err := os.Stat(enclavemanifest.BundlePath(bundle)); !os.IsNotExist(err) {
			t.Errorf("manifest left behind: %v", err)
		}
	})
}
