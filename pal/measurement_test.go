package pal_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// documentedMeasurement follows docs/measurement-pal.md step by step.
func documentedMeasurement(t *testing.T, libFile, args, level, path string, argv []string) string {
	t.Helper()
	lib, err := os.ReadFile(libFile)
	if err != nil {
		t.Fatal(err)
	}
	libDigest := sha256.Sum256(lib)
	var msg []byte
	u64 := func(n int) { msg = binary.LittleEndian.AppendUint64(msg, uint64(n)) }
	field := func(b []byte) { u64(len(b)); msg = append(msg, b...) }
	field([]byte("inclavare-go/pal/measurement/v1"))
	field(libDigest[:])
	field([]byte(args))
	field([]byte(level))
	field([]byte(path))
	u64(len(argv))
	for _, a := range argv {
		field([]byte(a))
	}
	sum := sha256.Sum256(msg)
	return hex.EncodeToString(sum[:])
}

func TestMeasurement(t *testing.T) {
	path := refPath(t, paltest.Options{Version: 3})
	other := refPath(t, paltest.Options{Version: 2})
	cfg := enclave.Config{Args: []string{"instance=/x", "k=v"}}
	p := enclave.Process{Path: "/bin/app", Args: []string{"app", "--flag", ""}, Env: []string{"A=1"}, Dir: "/srv"}

	lib, err := pal.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	mustInitCfg(t, lib, cfg)
	got, err := lib.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := documentedMeasurement(t, path, "instance=/x k=v", "info", "/bin/app", p.Args); got != want {
		t.Fatalf("Measurement = %s, documented encoding gives %s", got, want)
	}
	if off, err := pal.Measure(path, cfg, p); err != nil || off != got {
		t.Fatalf("Measure (without loading) = %s, %v; want %s", off, err, got)
	}

	differs := map[string]func() (string, error){
		"another library": func() (string, error) { return pal.Measure(other, cfg, p) },
		"other args": func() (string, error) {
			return pal.Measure(path, enclave.Config{Args: []string{"instance=/x,k=v"}}, p)
		},
		"args split differently": func() (string, error) {
			return pal.Measure(path, enclave.Config{Args: []string{"instance=/x k=v"}}, p)
		},
		"log level": func() (string, error) {
			return pal.Measure(path, enclave.Config{Args: cfg.Args, LogLevel: "debug"}, p)
		},
		"program": func() (string, error) {
			q := p
			q.Path = "/bin/other"
			return lib.Measurement(q)
		},
		"argv": func() (string, error) {
			q := p
			q.Args = []string{"app", "--flag"}
			return lib.Measurement(q)
		},
		"argv boundary": func() (string, error) {
			q := p
			q.Args = []string{"app", "--flag", "", ""}
			return lib.Measurement(q)
		},
	}
	for name, f := range differs {
		m, err := f()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// "args split differently" joins to the same pal_init string, so it
		// must measure the same: the PAL cannot tell them apart either.
		if same := name == "args split differently"; (m == got) != same {
			t.Errorf("%s: measurement %s vs %s (same expected: %v)", name, m, got, same)
		}
	}
	q := p
	q.Env, q.Dir = nil, ""
	if m, _ := lib.Measurement(q); m != got {
		t.Error("env or dir changed the measurement; they are not part of it")
	}
	if _, err := lib.Measurement(enclave.Process{}); err == nil {
		t.Error("Measurement of an empty program succeeded")
	}
	if _, err := pal.Measure(t.TempDir(), cfg, p); err == nil {
		t.Error("Measure of a directory succeeded")
	}
}

func mustInitCfg(t *testing.T, lib *pal.Library, cfg enclave.Config) {
	t.Helper()
	if err := lib.Init(t.Context(), cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}
}
