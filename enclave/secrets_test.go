package enclave

import (
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

const testPin = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestKBSSettings(t *testing.T) {
	base := []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native", "PATH=/bin"}
	for _, tc := range []struct {
		name string
		env  []string
		ann  map[string]string
		err  string
	}{
		{"env", []string{"ENCLAVE_KBS_URL=https://kbs:8443", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=repo/key/db:/run/secrets/db,repo/key/tls:/run/secrets/tls"}, nil, ""},
		{"annotations", nil, map[string]string{"enclave.kbs.url": "https://kbs", "enclave.kbs.ca": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", "enclave.secrets": "a/b/c:/s/x"}, ""},
		{"no pin nor CA", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_SECRETS=a/b/c:/s/x"}, nil, "trusts no broker by default"},
		{"pin and CA", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_KBS_CA=-----BEGIN CERTIFICATE-----", "ENCLAVE_SECRETS=a/b/c:/s/x"}, nil, "exclude each other"},
		{"plain http", []string{"ENCLAVE_KBS_URL=http://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/s/x"}, nil, "https://"},
		{"bad pin", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=sha1:00", "ENCLAVE_SECRETS=a/b/c:/s/x"}, nil, "sha256:<64 hex digits>"},
		{"secrets without a broker", []string{"ENCLAVE_SECRETS=a/b/c:/s/x"}, nil, "ENCLAVE_KBS_URL"},
		{"relative path", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:s/x"}, nil, "absolute"},
		{"path in /", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/x"}, nil, "directory of its own"},
		{"path in /etc", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/etc/x"}, nil, "would be hidden"},
		{"path in /proc", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/proc/self/x"}, nil, "under /proc"},
		{"traversal", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/../c:/s/x"}, nil, "starts with '.'"},
		{"unclean path", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/s/../etc/x"}, nil, "clean"},
		{"twice", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/s/x,a/b/d:/s/x"}, nil, "named twice"},
		{"no colon", []string{"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c"}, nil, "want <repository>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{Env: append(append([]string{}, base...), tc.env...)}, Annotations: tc.ann}
			s, err := FromSpec(spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.KBS == nil || len(s.KBS.Secrets) == 0 {
				t.Fatalf("settings %+v", s)
			}
			for _, kv := range spec.Process.Env {
				if strings.HasPrefix(kv, "ENCLAVE_") {
					t.Errorf("%s reached the workload's environment", kv)
				}
			}
		})
	}
	// A PAL fetches its secrets itself.
	spec := &specs.Spec{Process: &specs.Process{Env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=/opt/pal.so",
		"ENCLAVE_KBS_URL=https://kbs", "ENCLAVE_KBS_PIN=" + testPin, "ENCLAVE_SECRETS=a/b/c:/s/x"}}}
	if _, err := FromSpec(spec); err == nil || !strings.Contains(err.Error(), "built-in runtimes") {
		t.Fatalf("PAL with secrets: %v", err)
	}
}

// TestKBSMeasured: the pin (lower-cased) or the CA's digest and every id:path are measured, in
// order; the URL is not.
func TestKBSMeasured(t *testing.T) {
	k := &KBS{URL: "https://a", Pin: strings.ToUpper(testPin[:7]) + testPin[7:], Secrets: []Secret{{"a/b/c", "/s/x"}, {"a/b/d", "/t/y"}}}
	got := strings.Join(k.Measured(), " ")
	if got != "pin="+testPin+" a/b/c:/s/x a/b/d:/t/y" {
		t.Fatalf("measured %q", got)
	}
	k2 := *k
	k2.URL = "https://b"
	if strings.Join(k2.Measured(), " ") != got {
		t.Fatal("the URL is measured")
	}
	if dirs := k.SecretDirs(); strings.Join(dirs, " ") != "/s /t" {
		t.Fatalf("dirs %v", dirs)
	}
	var none *KBS
	if none.Measured() != nil || none.SecretDirs() != nil {
		t.Fatal("no broker measures something")
	}
}
