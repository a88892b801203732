package manager

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/runtime/v2/shim"
)

func TestGroup(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"no annotations: own shim", nil, "c1"},
		{"unrelated annotations", map[string]string{"io.kubernetes.cri.container-type": "container"}, "c1"},
		{"pod sandbox", map[string]string{"io.kubernetes.cri.sandbox-id": "pod-9"}, "pod-9"},
		{"explicit group wins over pod", map[string]string{"io.kubernetes.cri.sandbox-id": "pod-9", "io.containerd.rune.v2.group": "g"}, "g"},
		{"empty group ignored", map[string]string{"io.containerd.rune.v2.group": "", "io.kubernetes.cri.sandbox-id": "pod-9"}, "pod-9"},
		{"runc's group is not ours", map[string]string{"io.containerd.runc.v2.group": "g"}, "c1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Group("c1", tc.annotations); got != tc.want {
				t.Fatalf("Group = %q, want %q", got, tc.want)
			}
		})
	}
}

// Stop after a create that never recorded options (the configuration was refused):
// nothing to delete, init reported as killed with the pid it had, if any.
func TestStopWithoutOptions(t *testing.T) {
	ns := t.TempDir()
	for _, id := range []string{"current", "dead"} {
		if err := os.Mkdir(filepath.Join(ns, id), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ns, "dead", "init.pid"), []byte("4242"), 0o600); err != nil {
		t.Fatal(err)
	}
	// containerd runs delete in some bundle of the namespace.
	t.Chdir(filepath.Join(ns, "current"))
	ctx := namespaces.WithNamespace(context.Background(), "test")
	st, err := New("io.containerd.rune.v2").Stop(ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != 4242 || st.ExitStatus != 137 || st.ExitedAt.IsZero() {
		t.Fatalf("Stop = %+v, want pid 4242, status 137 and an exit time", st)
	}
	if _, err := New("x").Stop(context.Background(), "dead"); err == nil {
		t.Fatal("Stop without a namespace succeeded")
	}
}

func TestStartNeedsNamespaceAndSpec(t *testing.T) {
	t.Chdir(t.TempDir())
	m := New("io.containerd.rune.v2")
	if _, err := m.Start(context.Background(), "c", shim.StartOpts{}); err == nil {
		t.Fatal("Start without a namespace succeeded")
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	if _, err := m.Start(ctx, "c", shim.StartOpts{Address: "/run/x.sock"}); err == nil {
		t.Fatal("Start in a directory without config.json succeeded")
	}
	if m.Name() != "io.containerd.rune.v2" {
		t.Fatalf("Name = %q", m.Name())
	}
}
