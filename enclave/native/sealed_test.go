package native

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/layerkey"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

// sealedBusybox writes busybox, sealed with a fresh key for tenant/key/bb, to dir/name.
func sealedBusybox(t *testing.T, dir, name string) (path string, key []byte) {
	t.Helper()
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatalf("this test needs a static busybox at %s (Debian package busybox-static): %v", busybox, err)
	}
	key = make([]byte, sealed.KeySize)
	rand.Read(key)
	data, err := sealed.Seal(bb, key, "tenant/key/bb")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, name)
	writeFile(t, path, data, 0o755)
	return path, key
}

// TestSealedExecutable: a sealed executable runs from memory with the key the hook returns, is
// measured as stored, and does not run without the key (no hook, a refusing hook, a wrong key).
func TestSealedExecutable(t *testing.T) {
	exe, key := sealedBusybox(t, t.TempDir(), "app")
	// Rootfs "/": the runelet's case, and /proc is there.
	rt := newRuntime(t, "/")
	p := enclave.Process{Path: exe, Args: []string{"printf", "sealed %s", "ran"}}

	_, err := rt.Spawn(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "ENCLAVE_KBS_URL") || !strings.Contains(err.Error(), "tenant/key/bb") {
		t.Fatalf("without a key broker: %v", err)
	}
	refusal := errors.New("broker: policy denied the resource")
	rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { return nil, refusal })
	if _, err = rt.Spawn(context.Background(), p); !errors.Is(err, refusal) {
		t.Fatalf("with a refusing broker: %v", err)
	}
	rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { return make([]byte, sealed.KeySize), nil })
	if _, err = rt.Spawn(context.Background(), p); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("with a wrong key: %v", err)
	}

	var asked string
	rt.SetResourceFunc(func(_ context.Context, id string) ([]byte, error) { asked = id; return key, nil })
	got := run(t, rt, p, "")
	if got.status != 0 || got.stdout != "sealed ran" || asked != "tenant/key/bb" {
		t.Fatalf("got %+v, key %q asked", got, asked)
	}

	m, err := rt.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := os.ReadFile(exe)
	plain, _ := os.ReadFile(busybox)
	launch := Launch{Args: p.Args}
	if m != Measure(stored, launch) || m == Measure(plain, launch) {
		t.Fatal("the measurement is not over the sealed file as stored")
	}
}

// TestSealedNeedsProc: in a rootfs without /proc a sealed executable cannot run from memory; the
// error says so, before anything is fetched.
func TestSealedNeedsProc(t *testing.T) {
	root := newRootfs(t)
	_, key := sealedBusybox(t, filepath.Join(root, "bin"), "app")
	rt := newRuntime(t, root)
	fetched := false
	rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { fetched = true; return key, nil })
	_, err := rt.Spawn(context.Background(), enclave.Process{Path: "/bin/app", Args: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "/proc") {
		t.Fatalf("got %v", err)
	}
	if fetched {
		t.Fatal("the key was fetched for an executable that cannot run")
	}
}

// wrappedSeal seals plain the way a carrier does: a fresh content key, wrapped by kek for kid.
func wrappedSeal(t *testing.T, plain, kek []byte, kid string) []byte {
	t.Helper()
	dek := make([]byte, sealed.KeySize)
	rand.Read(dek)
	w, err := layerkey.Wrap(kek, kid, dek)
	if err != nil {
		t.Fatal(err)
	}
	data, err := sealed.SealWrapped(plain, dek, kid, w)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestWrappedSealedExecutable: an executable sealed at conversion (wrapped content key) runs with
// the KEK the hook returns and is measured as its plaintext; replaced after the measurement by
// another program sealed the same way (a node operator can wrap keys of its own), it does not
// run, and its key is never fetched.
func TestWrappedSealedExecutable(t *testing.T) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatalf("this test needs a static busybox at %s (Debian package busybox-static): %v", busybox, err)
	}
	kek := make([]byte, sealed.KeySize)
	rand.Read(kek)
	exe := filepath.Join(t.TempDir(), "app")
	writeFile(t, exe, wrappedSeal(t, bb, kek, "tenant/kek/bb"), 0o755)
	rt := newRuntime(t, "/")
	p := enclave.Process{Path: exe, Args: []string{"printf", "wrapped %s", "ran"}}
	m, err := rt.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := Measure(bb, Launch{Args: p.Args}); m != want {
		t.Fatalf("measurement %s, want the plaintext's %s", m, want)
	}
	fetched := 0
	rt.SetResourceFunc(func(_ context.Context, id string) ([]byte, error) { fetched++; return kek, nil })
	if got := run(t, rt, p, ""); got.status != 0 || got.stdout != "wrapped ran" || fetched != 1 {
		t.Fatalf("got %+v, %d fetches", got, fetched)
	}

	// The replacement: another program (a script, whatever) with its own true digest.
	writeFile(t, exe, wrappedSeal(t, append(bytes.Clone(bb), 0), kek, "tenant/kek/bb"), 0o755)
	fetched = 0
	_, err = rt.Spawn(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "changed since it was measured") || fetched != 0 {
		t.Fatalf("a replaced sealed executable: %v (%d fetches)", err, fetched)
	}
}

// TestSealedExecutableSwappedForPlain: the node operator replaces a sealed executable (sealed at
// conversion or by the tenant), after it was measured at create, by a plain executable of its
// own, which needs no key. Without a check it would run under the measurement of the sealed one
// (and could ask PID 1 for the tenant's keys); it is refused before it starts ("sealed when it
// was measured").
func TestSealedExecutableSwappedForPlain(t *testing.T) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatalf("this test needs a static busybox at %s (Debian package busybox-static): %v", busybox, err)
	}
	kek := make([]byte, sealed.KeySize)
	rand.Read(kek)
	tenantSealed, err := sealed.Seal(bb, kek, "tenant/key/bb")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"sealed at conversion": wrappedSeal(t, bb, kek, "tenant/kek/bb"), "tenant-sealed": tenantSealed} {
		t.Run(name, func(t *testing.T) {
			exe := filepath.Join(t.TempDir(), "app")
			writeFile(t, exe, data, 0o755)
			rt := newRuntime(t, "/")
			fetched := 0
			rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { fetched++; return kek, nil })
			p := enclave.Process{Path: exe, Args: []string{"printf", "node's program ran"}}
			if _, err := rt.Measurement(p); err != nil {
				t.Fatal(err)
			}
			// The node's own program: busybox with one more byte, in the clear.
			writeFile(t, exe, append(bytes.Clone(bb), 0), 0o755)
			proc, err := rt.Spawn(context.Background(), p)
			if err == nil {
				proc.Wait()
			}
			if err == nil || !strings.Contains(err.Error(), "sealed when it was measured") || fetched != 0 {
				t.Fatalf("a sealed executable swapped for a plain one after the measurement: %v (%d fetches)", err, fetched)
			}
		})
	}
}
