package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/pelletier/go-toml/v2"
	nodev1 "k8s.io/api/node/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// The enclave RuntimeClass (enclave-runtimeclass.md): a handler whose base runtime spec makes
// every container of a pod an enclave container. tests/cri and tests/critest run pods through
// this very handler configuration and spec file.
const (
	simNativeName     = "rune-sim-native"
	simNativeManifest = "runtimeclass-sim-native.yaml"
	simNativeSpec     = "containerd/rune-sim-native-spec.json"
	simNativeSpecPath = "/etc/inclavare-containers/rune-sim-native-spec.json"
)

// simNativeAnnotations are the enclave settings the base runtime spec gives every container.
var simNativeAnnotations = map[string]string{"enclave.type": "sim", "enclave.runtime.path": "builtin:native"}

// baseSpecRuntime is criRuntime with the key the enclave handler adds.
type baseSpecRuntime struct {
	RuntimeType          string         `toml:"runtime_type"`
	BaseRuntimeSpec      string         `toml:"base_runtime_spec"`
	ContainerAnnotations []string       `toml:"container_annotations"`
	Options              map[string]any `toml:"options"`
}

type baseSpecRuntimes struct {
	Containerd struct {
		Runtimes map[string]baseSpecRuntime `toml:"runtimes"`
	} `toml:"containerd"`
}

func TestSimNativeRuntimeClass(t *testing.T) {
	objs, err := decodeFile(simNativeManifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%s: %d objects, want one RuntimeClass", simNativeManifest, len(objs))
	}
	rc, ok := objs[0].(*nodev1.RuntimeClass)
	if !ok || rc.Name != simNativeName || rc.Handler != simNativeName {
		t.Fatalf("%s: %T %+v, want RuntimeClass %s with handler %[3]s", simNativeManifest, objs[0], objs[0], simNativeName)
	}
	// Scheduled and charged as the rune RuntimeClass: the same nodes, one rune shim per pod.
	rune := find[*nodev1.RuntimeClass](t, loadManifests(t), handlerName)
	if !reflect.DeepEqual(rc.Overhead, rune.Overhead) || !reflect.DeepEqual(rc.Scheduling, rune.Scheduling) {
		t.Errorf("overhead %+v and scheduling %+v, want rune's %+v and %+v", rc.Overhead, rc.Scheduling, rune.Overhead, rune.Scheduling)
	}
}

func TestSimNativeContainerdConfigs(t *testing.T) {
	// The rune handler's options, which the enclave handler shares (the same shim config).
	data, err := os.ReadFile("containerd/containerd-1.6-1.7.toml")
	if err != nil {
		t.Fatal(err)
	}
	runeConf, err := parseContainerdConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	runeHandler := runeConf.Plugins.CRIv2.Containerd.Runtimes[handlerName]
	for _, tc := range []struct {
		file    string
		version int
		plugin  string
	}{
		{"containerd/rune-sim-native-1.6-1.7.toml", 2, "io.containerd.grpc.v1.cri"},
		{"containerd/rune-sim-native-2.x.toml", 3, "io.containerd.cri.v1.runtime"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Version int                          `toml:"version"`
				Plugins map[string]*baseSpecRuntimes `toml:"plugins"`
			}
			if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&c); err != nil {
				var strict *toml.StrictMissingError
				if errors.As(err, &strict) {
					t.Fatalf("%s: %s", tc.file, strict.String())
				}
				t.Fatalf("%s: %v", tc.file, err)
			}
			cri := c.Plugins[tc.plugin]
			if c.Version != tc.version || len(c.Plugins) != 1 || cri == nil || len(cri.Containerd.Runtimes) != 1 {
				t.Fatalf("%s: version %d, plugins %v; want version %d with exactly one runtime under %s", tc.file, c.Version, c.Plugins, tc.version, tc.plugin)
			}
			r, ok := cri.Containerd.Runtimes[simNativeName]
			if !ok {
				t.Fatalf("%s: no runtime named after the RuntimeClass handler %q", tc.file, simNativeName)
			}
			if r.RuntimeType != runtimeType || r.BaseRuntimeSpec != simNativeSpecPath ||
				!reflect.DeepEqual(r.ContainerAnnotations, runeHandler.ContainerAnnotations) || !reflect.DeepEqual(r.Options, runeHandler.Options) {
				t.Errorf("%s: %+v; want runtime type %s, base runtime spec %s, and rune's annotations %v and options %v",
					tc.file, r, runtimeType, simNativeSpecPath, runeHandler.ContainerAnnotations, runeHandler.Options)
			}
		})
	}
}

// TestSimNativeSpec checks the base runtime spec: containerd's own default container spec (that
// of `ctr oci spec`, containerd 2.x's) with only the enclave settings added and the rlimits
// removed, as CRI removes them for handlers without a base spec. Anything else in it would
// make the handler's containers differ from the rune handler's in more than being enclaves.
func TestSimNativeSpec(t *testing.T) {
	data, err := os.ReadFile(simNativeSpec)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		t.Fatalf("%s: %v", simNativeSpec, err)
	}
	if !maps.Equal(spec.Annotations, simNativeAnnotations) {
		t.Errorf("annotations %v, want exactly %v", spec.Annotations, simNativeAnnotations)
	}
	if spec.Process == nil || spec.Process.Rlimits != nil || spec.Process.ApparmorProfile != "" || spec.Linux == nil || spec.Linux.Seccomp != nil {
		t.Errorf("process %+v; want no rlimits, AppArmor profile or seccomp filter (CRI sets those from the pod)", spec.Process)
	}

	if os.Geteuid() != 0 {
		clients.Unavailable(t, "containerd %s's default spec is compared as root (uid %d)", clients.Containerd2Version, os.Geteuid())
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		clients.Unavailable(t, "go: %v", err)
	}
	cache, err := clients.TestCacheDir()
	var dir string
	if err == nil {
		dir, err = clients.InstallContainerd2(goBin, cache)
	}
	if err != nil {
		clients.Unavailable(t, "containerd %s: %v", clients.Containerd2Version, err)
	}
	res, err := clients.Run(context.Background(), time.Minute, nil, filepath.Join(dir, "ctr"), "oci", "spec")
	if err == nil && res.ExitCode != 0 {
		err = errors.New(res.String())
	}
	if err != nil {
		t.Fatalf("ctr oci spec: %v", err)
	}
	var want specs.Spec
	if err := json.Unmarshal([]byte(res.Stdout), &want); err != nil {
		t.Fatalf("decode ctr oci spec: %v", err)
	}
	want.Process.Rlimits = nil
	want.Annotations = simNativeAnnotations
	if !reflect.DeepEqual(spec, want) {
		got, _ := json.MarshalIndent(spec, "", "  ")
		exp, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s is not containerd %s's default spec with the enclave annotations and without rlimits:\n%s\nwant:\n%s",
			simNativeSpec, clients.Containerd2Version, got, exp)
	}
}
