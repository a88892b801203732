package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// defaultEnclave is the [enclave] section when the file has none.
var defaultEnclave = Enclave{PALDirs: DefaultPALDirs}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Config
	}{
		{
			name: "empty document: defaults",
			doc:  "",
			want: Config{Rune: Rune{Root: DefaultRuneRoot}, Carriers: Carriers{CacheDir: DefaultCarrierCacheDir}, Enclave: defaultEnclave},
		},
		{
			name: "every key",
			doc: `log_level = "debug"
[rune]
path = "/usr/local/bin/rune"
root = "/run/rune"
systemd_cgroup = true
[signing.service]
url = "https://signer.example:8443/v1/sign"
client_cert = "/etc/inclavare-containers/client.pem"
client_key = "/etc/inclavare-containers/client.key"
ca_cert = "/etc/inclavare-containers/ca.pem"
timeout = "5s"
[carriers]
enabled = ["wasm", "occlum"]
cache_dir = "/var/cache/carriers"
[enclave]
pal_dirs = ["/opt/occlum/build/lib", "/srv/pal"]
`,
			want: Config{
				LogLevel: "debug",
				Rune:     Rune{Path: "/usr/local/bin/rune", Root: "/run/rune", SystemdCgroup: true},
				Signing: Signing{Service: &SigningService{
					URL:        "https://signer.example:8443/v1/sign",
					ClientCert: "/etc/inclavare-containers/client.pem",
					ClientKey:  "/etc/inclavare-containers/client.key",
					CACert:     "/etc/inclavare-containers/ca.pem",
					Timeout:    Duration(5 * time.Second),
				}},
				Carriers: Carriers{Enabled: []string{"wasm", "occlum"}, CacheDir: "/var/cache/carriers"},
				Enclave:  Enclave{PALDirs: []string{"/opt/occlum/build/lib", "/srv/pal"}},
			},
		},
		{
			name: "key file signing, default service timeout not applied",
			doc:  "[signing]\nkey_file = \"/etc/k.pem\"\n[carriers]\nenabled = [\"wasm\"]\n",
			want: Config{
				Rune:     Rune{Root: DefaultRuneRoot},
				Signing:  Signing{KeyFile: "/etc/k.pem"},
				Carriers: Carriers{Enabled: []string{"wasm"}, CacheDir: DefaultCarrierCacheDir},
				Enclave:  defaultEnclave,
			},
		},
		{
			name: "service without ca and timeout",
			doc:  "[signing.service]\nurl = \"https://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n",
			want: Config{
				Rune:     Rune{Root: DefaultRuneRoot},
				Signing:  Signing{Service: &SigningService{URL: "https://s", ClientCert: "/c", ClientKey: "/k", Timeout: Duration(DefaultSigningTimeout)}},
				Carriers: Carriers{CacheDir: DefaultCarrierCacheDir},
				Enclave:  defaultEnclave,
			},
		},
		{
			name: "ephemeral signing and rune's manifest trust",
			doc:  "[rune]\nmanifest_trust = \"/etc/trust.pem\"\n[signing]\nephemeral = true\n[carriers]\nenabled = [\"native\"]\n",
			want: Config{
				Rune:     Rune{Root: DefaultRuneRoot, ManifestTrust: "/etc/trust.pem"},
				Signing:  Signing{Ephemeral: true},
				Carriers: Carriers{Enabled: []string{"native"}, CacheDir: DefaultCarrierCacheDir},
				Enclave:  defaultEnclave,
			},
		},
		{
			name: "no PAL allowed",
			doc:  "[enclave]\npal_dirs = []\n",
			want: Config{Rune: Rune{Root: DefaultRuneRoot}, Carriers: Carriers{CacheDir: DefaultCarrierCacheDir}, Enclave: Enclave{PALDirs: []string{}}},
		},
		{name: "warn level", doc: `log_level = "warn"`, want: Config{LogLevel: "warn", Rune: Rune{Root: DefaultRuneRoot}, Carriers: Carriers{CacheDir: DefaultCarrierCacheDir}, Enclave: defaultEnclave}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("Parse = %+v\nwant    %+v", *got, tc.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // every one must appear in the error
	}{
		{"unknown top-level key", "loglevel = \"info\"\n", []string{`unknown key "loglevel"`, "line 1"}},
		{"unknown nested keys", "[rune]\npth = \"/x\"\nfoo = 1\n", []string{`unknown key "rune.pth" (line 2`, `unknown key "rune.foo" (line 3`}},
		{"unknown table", "[enclave_runtime]\nx = 1\n", []string{`unknown key "enclave_runtime"`}},
		{"syntax", "[rune\n", []string{"line 1"}},
		{"wrong type", "log_level = 3\n", []string{`key "log_level"`}},
		{"bool as string", "[rune]\nsystemd_cgroup = \"yes\"\n", []string{`key "rune.systemd_cgroup"`}},
		{"list as string", "[carriers]\nenabled = \"wasm\"\n", []string{`key "carriers.enabled"`}},
		{"bad log level", `log_level = "loud"`, []string{`log_level "loud"`}},
		{"log level in capitals", `log_level = "DEBUG"`, []string{`log_level "DEBUG"`}},
		{"relative rune path", "[rune]\npath = \"rune\"\n", []string{`rune.path "rune": must be an absolute path`}},
		{"unclean root", "[rune]\nroot = \"/run//rune/\"\n", []string{`rune.root "/run//rune/": must be a clean path`}},
		{"relative cache dir", "[carriers]\ncache_dir = \"cache\"\n", []string{"carriers.cache_dir"}},
		{"both signers", "[signing]\nkey_file = \"/k\"\n[signing.service]\nurl = \"https://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"mutually exclusive"}},
		{"relative key file", "[signing]\nkey_file = \"k.pem\"\n", []string{"signing.key_file"}},
		{"http signer", "[signing.service]\nurl = \"http://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"only https"}},
		{"no url", "[signing.service]\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"signing.service.url is required"}},
		{"url without host", "[signing.service]\nurl = \"https:///x\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"has no host"}},
		{"credentials in url", "[signing.service]\nurl = \"https://u:p@s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"must not carry credentials"}},
		{"query in url", "[signing.service]\nurl = \"https://s/?k=v\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"query or fragment"}},
		{"no client certificate", "[signing.service]\nurl = \"https://s\"\n", []string{"client_cert is required", "client_key is required"}},
		{"bad timeout", "[signing.service]\nurl = \"https://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\ntimeout = \"soon\"\n", []string{`key "signing.service.timeout"`, "not a duration"}},
		{"negative timeout", "[signing.service]\nurl = \"https://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\ntimeout = \"-1s\"\n", []string{"signing.service.timeout"}},
		{"huge timeout", "[signing.service]\nurl = \"https://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\ntimeout = \"1h\"\n", []string{"at most 10m0s"}},
		{"carrier name", "[signing]\nkey_file = \"/k\"\n[carriers]\nenabled = [\"Occlum!\"]\n", []string{`"Occlum!" is not a carrier name`}},
		{"carrier twice", "[signing]\nkey_file = \"/k\"\n[carriers]\nenabled = [\"wasm\", \"wasm\"]\n", []string{`"wasm" listed twice`}},
		{"carriers without signer", "[carriers]\nenabled = [\"wasm\"]\n", []string{"carriers.enabled needs [signing]"}},
		{"ephemeral with a key file", "[signing]\nkey_file = \"/k\"\nephemeral = true\n", []string{"ephemeral = true excludes key_file"}},
		{"ephemeral with a service", "[signing]\nephemeral = true\n[signing.service]\nurl = \"https://s\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n", []string{"ephemeral = true excludes"}},
		{"relative manifest trust", "[rune]\nmanifest_trust = \"trust.pem\"\n", []string{`rune.manifest_trust "trust.pem": must be an absolute path`}},
		{"relative PAL dir", "[enclave]\npal_dirs = [\"pal\"]\n", []string{`enclave.pal_dirs "pal": must be an absolute path`}},
		{"unclean PAL dir", "[enclave]\npal_dirs = [\"/opt/pal/../etc\"]\n", []string{`enclave.pal_dirs "/opt/pal/../etc": must be a clean path`}},
		{"root as PAL dir", "[enclave]\npal_dirs = [\"/\"]\n", []string{`enclave.pal_dirs: "/" would allow every library`}},
		{"PAL dir twice", "[enclave]\npal_dirs = [\"/p\", \"/p\"]\n", []string{`enclave.pal_dirs: "/p" listed twice`}},
		{"PAL dirs as string", "[enclave]\npal_dirs = \"/p\"\n", []string{`key "enclave.pal_dirs"`}},
		{"unknown enclave key", "[enclave]\npal_dir = [\"/p\"]\n", []string{`unknown key "enclave.pal_dir"`}},
		{"several problems at once", "log_level = \"x\"\n[rune]\nroot = \"r\"\n", []string{"log_level", "rune.root"}},
		{"oversized", strings.Repeat("#", maxFileSize+1), []string{"more than the"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted %q: %+v", tc.doc, c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLocate(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvPath {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name     string
		optPath  string
		optBody  []byte
		envValue string
		want     Source
	}{
		{"default", "", nil, "", Source{Path: DefaultPath}},
		{"environment", "", nil, "/t/shim.toml", Source{Path: "/t/shim.toml", Required: true}},
		{"body beats environment", "", []byte("x"), "/t/shim.toml", Source{Body: []byte("x")}},
		{"option path beats all", "/o.toml", []byte("x"), "/t/shim.toml", Source{Path: "/o.toml", Required: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Locate(tc.optPath, tc.optBody, env(tc.envValue)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Locate = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	writeTestFile(t, good, "log_level = \"info\"\n")
	bad := filepath.Join(dir, "bad.toml")
	writeTestFile(t, bad, "log_levle = \"info\"\n")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.toml")

	tests := []struct {
		name    string
		src     Source
		wantErr string // "" = success
	}{
		{"file", Source{Path: good, Required: true}, ""},
		{"optional missing file gives defaults", Source{Path: missing}, ""},
		{"required missing file", Source{Path: missing, Required: true}, "no such file"},
		{"invalid file names itself and the key", Source{Path: bad, Required: true}, bad + `: unknown key "log_levle"`},
		{"fifo is refused without blocking", Source{Path: fifo, Required: true}, "not a regular file"},
		{"directory", Source{Path: dir, Required: true}, "not a regular file"},
		{"body", Source{Body: []byte("[rune]\nsystemd_cgroup = true\n")}, ""},
		{"invalid body", Source{Body: []byte("[rune]\nsystemd = true\n")}, `runtime options ConfigBody: unknown key "rune.systemd"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.src)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.wantErr == "" && c == nil:
				t.Fatal("Load returned no configuration")
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestLoadEnclave: rune reads $RUNE_CONFIG, else the shim's $INCLAVARE_SHIM_CONFIG, else the
// default file; the whole file is decoded strictly, but the key files it names are not opened.
func TestLoadEnclave(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "rune.toml")
	// The key file does not exist: that is the shim's concern, not rune's.
	writeTestFile(t, mine, "[signing]\nkey_file = \"/nonexistent/key.pem\"\n[enclave]\npal_dirs = [\"/srv/pal\"]\n")
	shim := filepath.Join(dir, "shim.toml")
	writeTestFile(t, shim, "[enclave]\npal_dirs = [\"/srv/shim-pal\"]\n")
	typo := filepath.Join(dir, "typo.toml")
	writeTestFile(t, typo, "[enclave]\npal_dirs = [\"/srv/pal\"]\n[rune]\npth = \"/x\"\n")
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		wantErr string
	}{
		{"RUNE_CONFIG", map[string]string{EnvRunePath: mine, EnvPath: shim}, []string{"/srv/pal"}, ""},
		{"the shim's file", map[string]string{EnvPath: shim}, []string{"/srv/shim-pal"}, ""},
		{"named file missing", map[string]string{EnvRunePath: filepath.Join(dir, "missing.toml")}, nil, "no such file"},
		{"strict like the shim", map[string]string{EnvRunePath: typo}, nil, `unknown key "rune.pth"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, path, err := LoadEnclave(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("LoadEnclave = %v, %v; want an error naming %s and containing %q", e, err, path, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(e.PALDirs, tc.want) {
				t.Fatalf("LoadEnclave = %+v, %v; want pal_dirs %q", e, err, tc.want)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	w := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeTestFile(t, p, content)
		return p
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := w("rsa.pem", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)))
	ecPEM := w("ec.pem", pemOf("EC PRIVATE KEY", ecDER))
	pkcs8PEM := w("pkcs8.pem", pemOf("PRIVATE KEY", pkcs8))
	certPEM, certDER := selfSigned(t, ecKey)
	cert := w("cert.pem", certPEM)
	public := w("public.pem", pemOf("PUBLIC KEY", certDER))
	spki, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	trustKey := w("trust.pem", pemOf("PUBLIC KEY", spki))
	twoKeys := w("two.pem", pemOf("EC PRIVATE KEY", ecDER)+pemOf("EC PRIVATE KEY", ecDER))
	corrupt := w("corrupt.pem", pemOf("EC PRIVATE KEY", []byte("not DER")))
	exe := w("rune", "#!/bin/sh\n")
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	notExe := w("notexe", "data")

	svc := func(certFile, keyFile, ca string) *SigningService {
		return &SigningService{URL: "https://s", ClientCert: certFile, ClientKey: keyFile, CACert: ca, Timeout: Duration(time.Second)}
	}
	tests := []struct {
		name    string
		c       Config
		wantErr string
	}{
		{"nothing to check", Config{}, ""},
		{"RSA key", Config{Signing: Signing{KeyFile: rsaPEM}}, ""},
		{"EC key", Config{Signing: Signing{KeyFile: ecPEM}}, ""},
		{"PKCS#8 Ed25519 key", Config{Signing: Signing{KeyFile: pkcs8PEM}}, ""},
		{"certificate is not a key", Config{Signing: Signing{KeyFile: cert}}, `signing.key_file: ` + cert + `: PEM block 1 is "CERTIFICATE", want RSA PRIVATE KEY or EC PRIVATE KEY or PRIVATE KEY`},
		{"public key is not a private key", Config{Signing: Signing{KeyFile: public}}, `is "PUBLIC KEY", want RSA PRIVATE KEY`},
		{"two keys", Config{Signing: Signing{KeyFile: twoKeys}}, "2 PEM blocks, want one"},
		// Keys are parsed by the conversion (shim/carrierhelper.CheckFiles), not at every create.
		{"corrupt key: PEM structure only", Config{Signing: Signing{KeyFile: corrupt}}, ""},
		{"missing key", Config{Signing: Signing{KeyFile: filepath.Join(dir, "none.pem")}}, "no such file"},
		{"client pair and CA", Config{Signing: Signing{Service: svc(cert, ecPEM, cert)}}, ""},
		{"client pair, system roots", Config{Signing: Signing{Service: svc(cert, ecPEM, "")}}, ""},
		{"mismatched pair: PEM structure only", Config{Signing: Signing{Service: svc(cert, rsaPEM, "")}}, ""},
		{"client key is a certificate", Config{Signing: Signing{Service: svc(cert, cert, "")}}, `signing.service.client_key: ` + cert + `: PEM block 1 is "CERTIFICATE"`},
		{"CA file without certificate", Config{Signing: Signing{Service: svc(cert, ecPEM, ecPEM)}}, `signing.service.ca_cert: ` + ecPEM + `: PEM block 1 is "EC PRIVATE KEY", want CERTIFICATE`},
		{"empty CA file", Config{Signing: Signing{Service: svc(cert, ecPEM, notExe)}}, "no PEM block"},
		{"data after the blocks", Config{Signing: Signing{KeyFile: w("trailing.pem", pemOf("EC PRIVATE KEY", ecDER)+"junk")}}, "data after the last PEM block"},
		{"manifest trust: a certificate", Config{Rune: Rune{ManifestTrust: cert}}, ""},
		{"manifest trust: a public key", Config{Rune: Rune{ManifestTrust: trustKey}}, ""},
		{"manifest trust: a private key", Config{Rune: Rune{ManifestTrust: ecPEM}}, `rune.manifest_trust: ` + ecPEM + `: PEM block 1 is "EC PRIVATE KEY", want PUBLIC KEY or CERTIFICATE`},
		{"manifest trust: missing", Config{Rune: Rune{ManifestTrust: filepath.Join(dir, "none.pem")}}, "rune.manifest_trust: "},
		{"executable rune", Config{Rune: Rune{Path: exe}}, ""},
		{"rune not executable", Config{Rune: Rune{Path: notExe}}, "not an executable file"},
		{"rune is a directory", Config{Rune: Rune{Path: dir}}, "not an executable file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.CheckFiles()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("CheckFiles: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("CheckFiles error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckCarriers(t *testing.T) {
	c := &Config{Carriers: Carriers{Enabled: []string{"wasm", "occlum"}}}
	if err := c.CheckCarriers([]string{"occlum", "wasm", "native"}); err != nil {
		t.Fatalf("all available: %v", err)
	}
	err := c.CheckCarriers([]string{"wasm"})
	if err == nil || !strings.Contains(err.Error(), `carrier "occlum" is not available in this shim (available: wasm)`) {
		t.Fatalf("occlum unavailable: %v", err)
	}
	err = c.CheckCarriers(nil)
	if err == nil || !strings.Contains(err.Error(), "(available: none)") {
		t.Fatalf("no carriers: %v", err)
	}
	if err := (&Config{}).CheckCarriers(nil); err != nil {
		t.Fatalf("none enabled, none available: %v", err)
	}
}

func TestResolveRune(t *testing.T) {
	dir := t.TempDir()
	shimDir := filepath.Join(dir, "bin")
	pathDir := filepath.Join(dir, "path")
	for _, d := range []string{shimDir, pathDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	configured := filepath.Join(dir, "configured-rune")
	beside := filepath.Join(shimDir, "rune")
	onPath := filepath.Join(pathDir, "rune")
	for _, p := range []string{configured, beside, onPath} {
		writeTestFile(t, p, "#!/bin/sh\n")
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shimExe := filepath.Join(shimDir, "containerd-shim-rune-v2")
	t.Setenv("PATH", pathDir)

	if got, err := (&Config{Rune: Rune{Path: configured}}).ResolveRune(shimExe); err != nil || got != configured {
		t.Fatalf("configured: %q, %v; want %q", got, err, configured)
	}
	if got, err := (&Config{}).ResolveRune(shimExe); err != nil || got != beside {
		t.Fatalf("beside the shim: %q, %v; want %q", got, err, beside)
	}
	if got, err := (&Config{}).ResolveRune(filepath.Join(dir, "elsewhere", "shim")); err != nil || got != onPath {
		t.Fatalf("on PATH: %q, %v; want %q", got, err, onPath)
	}
	if _, err := (&Config{Rune: Rune{Path: filepath.Join(dir, "none")}}).ResolveRune(shimExe); err == nil || !strings.Contains(err.Error(), "rune.path") {
		t.Fatalf("missing configured rune: %v", err)
	}
	t.Setenv("PATH", dir+"/empty")
	if _, err := (&Config{}).ResolveRune(filepath.Join(dir, "elsewhere", "shim")); err == nil || !strings.Contains(err.Error(), "set rune.path") {
		t.Fatalf("rune nowhere: %v", err)
	}
}

// FuzzParse: no input makes Parse panic, and what it accepts is valid by its own rules.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"log_level = \"debug\"\n",
		"[rune]\npath = \"/usr/bin/rune\"\nroot = \"/run/rune\"\nsystemd_cgroup = true\n",
		"[signing.service]\nurl = \"https://s:1/x\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\ntimeout = \"3s\"\n",
		"[signing]\nkey_file = \"/k\"\n[carriers]\nenabled = [\"wasm\"]\ncache_dir = \"/c\"\n",
		"[rune\n",
		"a.b.c = [1, {x = 2}]\n",
		"log_level = \"\"\"\nmulti\n\"\"\"\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if c.Rune.Root == "" || c.Carriers.CacheDir == "" {
			t.Fatalf("accepted configuration without defaults: %+v", c)
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted configuration fails validation: %v", err)
		}
	})
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey) (string, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "shim test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:         true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair([]byte(pemOf("CERTIFICATE", der)), []byte(pemOf("EC PRIVATE KEY", mustEC(t, key)))); err != nil {
		t.Fatal(err)
	}
	return pemOf("CERTIFICATE", der), der
}

func mustEC(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestKeyProvider(t *testing.T) {
	base := "[signing]\nephemeral = true\n[carriers]\nenabled = [\"wasm\"]\n"
	for addr, want := range map[string]string{
		"unix:///run/verdictd/kp.sock": "",
		"127.0.0.1:50000":              "",
		"[::1]:50000":                  "",
		"unix://run/kp.sock":           "absolute",
		"unix:///run/../kp.sock":       "clean",
		"127.0.0.1":                    "host:port",
		"127.0.0.1:0":                  "port",
		"127.0.0.1:http":               "port",
		":50000":                       "host:port",
		"http://127.0.0.1:5/x":         "host:port",
	} {
		c, err := Parse([]byte(base + "keyprovider = \"" + addr + "\"\n"))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", addr, err)
		case want == "" && c.Carriers.KeyProvider != addr:
			t.Errorf("%s: read %q", addr, c.Carriers.KeyProvider)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "carriers.keyprovider")):
			t.Errorf("%s: got %v, want an error with %q", addr, err, want)
		}
	}
}
