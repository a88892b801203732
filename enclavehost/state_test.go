package enclavehost

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

func TestState(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "c1"), 0o700)
	if st, err := LoadState(root, "c1"); st != nil || err != nil {
		t.Fatalf("ordinary container: %v, %v", st, err)
	}
	st := &State{Settings: enclave.Settings{Type: attestation.Sim, RuntimePath: "builtin:native"}, Measurement: "m", Phase: PhaseCreated}
	if err := st.save(root, "c1"); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(root, "c1")
	if err != nil || got.Measurement != "m" || got.Settings.Runtime() != enclave.NativeRuntime {
		t.Fatalf("LoadState = %+v, %v", got, err)
	}
	if got.Started(root, "c1") {
		t.Error("created container reported started")
	}
	if err := markStarted(root, "c1"); err != nil {
		t.Fatal(err)
	}
	if !got.Started(root, "c1") {
		t.Error("marked container not reported started")
	}
	unmarkStarted(root, "c1")
	// States written before the marker recorded the phase in enclave.json.
	if !(&State{Phase: PhaseRunning}).Started(root, "c1") {
		t.Error("phase running not reported started")
	}
	// A start that reaches no runelet leaves no mark.
	if err := StartWorkload(context.Background(), root, "c1"); err == nil {
		t.Fatal("start without a runelet succeeded")
	}
	if got.Started(root, "c1") {
		t.Error("a failed start left the container marked started")
	}
	os.WriteFile(filepath.Join(root, "c1", StateFile), []byte("{"), 0o600)
	if _, err := LoadState(root, "c1"); err == nil || !strings.Contains(err.Error(), "enclave state of c1") {
		t.Errorf("damaged state: %v", err)
	}
}

// TestCreateOrdinaryAndInvalid: Create leaves an ordinary container alone, and refuses bad
// enclave settings before it touches the host (no state, no socket, no copies).
func TestCreateOrdinaryAndInvalid(t *testing.T) {
	root, bundle := t.TempDir(), t.TempDir()
	o := CreateOptions{Root: root, ID: "c1", Bundle: bundle}
	spec := &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Process: &specs.Process{Args: []string{"/bin/true"}, Env: []string{"PATH=/bin"}}}
	if l, err := Create(context.Background(), spec, o); l != nil || err != nil {
		t.Fatalf("ordinary container: %v, %v", l, err)
	}
	for env, want := range map[string]string{
		"ENCLAVE_TYPE=nope":                                      `unknown enclave type "nope"`,
		"ENCLAVE_RUNTIME_PATH=builtin:wasm":                      "ENCLAVE_TYPE is not",
		"ENCLAVE_TYPE=sim\x00ENCLAVE_RUNTIME_PATH=builtin:other": `unknown built-in enclave runtime "builtin:other"`,
		"ENCLAVE_TYPE=sim\x00ENCLAVE_RUNTIME_PATH=libpal.so":     "absolute host path",
	} {
		spec := &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Process: &specs.Process{Args: []string{"/bin/true"}, Env: strings.Split(env, "\x00")}}
		if _, err := Create(context.Background(), spec, o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", env, err, want)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("Create left %d entries in the state root", len(entries))
	}
}
