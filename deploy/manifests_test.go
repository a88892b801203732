package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"

	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/pelletier/go-toml/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/deviceplugin"
	"github.com/inclavare-containers/inclavare-go/enclave"
	shimconfig "github.com/inclavare-containers/inclavare-go/shim/config"
)

// The contract (shared/design/ARCHITECTURE.md, "Contract"): runtime type, RuntimeClass and
// handler names.
const (
	runtimeType  = "io.containerd.rune.v2"
	handlerName  = "rune"
	namespace    = "inclavare-system"
	nodeLabel    = "inclavare.io/rune"
	imagePrefix  = "ghcr.io/inclavare-containers/"
	nodeImage    = imagePrefix + "inclavare-node"
	exampleImage = imagePrefix + "hello-wasm"
)

// manifestFiles are every Kubernetes manifest of the directory.
var manifestFiles = []string{"runtimeclass.yaml", "rune-deploy.yaml", "device-plugin.yaml", "examples/hello-sim-wasm.yaml"}

var codecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, nodev1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// decodeStrict decodes one YAML document into its Kubernetes API type. Unknown or duplicate
// fields, fields in the wrong case, and kinds the API does not have are errors.
func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// decodeFile decodes every document of a manifest file.
func decodeFile(name string) ([]runtime.Object, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, err := decodeStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		objs = append(objs, obj)
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

// manifests are the decoded objects, by file.
type manifests struct {
	byFile map[string][]runtime.Object
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{byFile: map[string][]runtime.Object{}}
	for _, f := range manifestFiles {
		objs, err := decodeFile(f)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		m.byFile[f] = objs
	}
	return m
}

func (m *manifests) all() []runtime.Object {
	var out []runtime.Object
	for _, f := range manifestFiles {
		out = append(out, m.byFile[f]...)
	}
	return out
}

func find[T runtime.Object](t *testing.T, m *manifests, name string) T {
	t.Helper()
	var found []T
	for _, o := range m.all() {
		if v, ok := o.(T); ok && o.(metav1.Object).GetName() == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %q, want 1", len(found), zero, name)
	}
	return found[0]
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	var got []string
	for _, f := range manifestFiles {
		for _, o := range m.byFile[f] {
			meta := o.(metav1.Object)
			got = append(got, fmt.Sprintf("%s %T %s/%s", f, o, meta.GetNamespace(), meta.GetName()))
		}
	}
	want := []string{
		"runtimeclass.yaml *v1.RuntimeClass /rune",
		"rune-deploy.yaml *v1.Namespace /inclavare-system",
		"rune-deploy.yaml *v1.ServiceAccount inclavare-system/rune-deploy",
		"rune-deploy.yaml *v1.ConfigMap inclavare-system/rune-config",
		"rune-deploy.yaml *v1.DaemonSet inclavare-system/rune-deploy",
		"device-plugin.yaml *v1.ServiceAccount inclavare-system/rune-device-plugin",
		"device-plugin.yaml *v1.DaemonSet inclavare-system/rune-device-plugin",
		"examples/hello-sim-wasm.yaml *v1.Pod /hello-enclave",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestStrictDecoderRejects proves that the decoder used above fails on what a lenient one
// would silently drop.
func TestStrictDecoderRejects(t *testing.T) {
	orig, err := os.ReadFile("runtimeclass.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeStrict(orig); err != nil {
		t.Fatalf("runtimeclass.yaml: %v", err)
	}
	for name, mutate := range map[string]func(string) string{
		"unknown field":   func(s string) string { return strings.Replace(s, "handler: rune", "handlr: rune", 1) },
		"wrong case":      func(s string) string { return strings.Replace(s, "handler: rune", "Handler: rune", 1) },
		"duplicate field": func(s string) string { return s + "handler: other\n" },
		"unknown nested":  func(s string) string { return strings.Replace(s, "  podFixed:", "  podFixd:", 1) },
		"unknown kind":    func(s string) string { return strings.Replace(s, "kind: RuntimeClass", "kind: RuntimeKlass", 1) },
	} {
		doc := mutate(string(orig))
		if doc == string(orig) {
			t.Fatalf("%s: mutation did nothing", name)
		}
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestObjectsWellFormed checks what the API server would refuse and what a decoder cannot see:
// names, labels, selectors, references between volumes, mounts, service accounts, namespaces.
func TestObjectsWellFormed(t *testing.T) {
	m := loadManifests(t)
	accounts := map[string]bool{}
	configMaps := map[string]*corev1.ConfigMap{}
	haveNamespace := false
	for _, o := range m.all() {
		meta := o.(metav1.Object)
		for _, e := range validation.IsDNS1123Subdomain(meta.GetName()) {
			t.Errorf("%T %s: name: %s", o, meta.GetName(), e)
		}
		for k, v := range meta.GetLabels() {
			for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
				t.Errorf("%T %s: label %s=%s: %s", o, meta.GetName(), k, v, e)
			}
		}
		switch v := o.(type) {
		case *corev1.Namespace:
			haveNamespace = v.Name == namespace
		case *corev1.ServiceAccount:
			accounts[v.Name] = true
			if v.AutomountServiceAccountToken == nil || *v.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s mounts an API token; nothing here talks to the API server", v.Name)
			}
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
		}
		if _, ok := o.(*corev1.Namespace); !ok && meta.GetNamespace() != "" && meta.GetNamespace() != namespace {
			t.Errorf("%T %s in namespace %q, want %s", o, meta.GetName(), meta.GetNamespace(), namespace)
		}
	}
	if !haveNamespace {
		t.Errorf("no Namespace %s", namespace)
	}
	for _, ds := range []*appsv1.DaemonSet{find[*appsv1.DaemonSet](t, m, "rune-deploy"), find[*appsv1.DaemonSet](t, m, "rune-device-plugin")} {
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil {
			t.Errorf("DaemonSet %s: selector: %v", ds.Name, err)
		} else if sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
			t.Errorf("DaemonSet %s: selector %s does not select its pods (labels %v)", ds.Name, sel, ds.Spec.Template.Labels)
		}
		if ds.Namespace != namespace {
			t.Errorf("DaemonSet %s: namespace %q", ds.Name, ds.Namespace)
		}
		spec := ds.Spec.Template.Spec
		if !accounts[spec.ServiceAccountName] {
			t.Errorf("DaemonSet %s: service account %q is not defined", ds.Name, spec.ServiceAccountName)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("DaemonSet %s: its pods mount an API token", ds.Name)
		}
		if got := spec.NodeSelector[nodeLabel]; got != "true" || len(spec.NodeSelector) != 1 {
			t.Errorf("DaemonSet %s: node selector %v, want %s=true", ds.Name, spec.NodeSelector, nodeLabel)
		}
		checkPodSpec(t, "DaemonSet "+ds.Name, &spec, configMaps)
	}
	pod := find[*corev1.Pod](t, m, "hello-enclave")
	checkPodSpec(t, "Pod "+pod.Name, &pod.Spec, configMaps)
}

func checkPodSpec(t *testing.T, what string, spec *corev1.PodSpec, configMaps map[string]*corev1.ConfigMap) {
	t.Helper()
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if volumes[v.Name] != nil {
			t.Errorf("%s: volume %s defined twice", what, v.Name)
		}
		volumes[v.Name] = v
		if v.ConfigMap != nil {
			cm := configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Errorf("%s: volume %s: ConfigMap %s is not defined", what, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, item := range v.ConfigMap.Items {
				if _, ok := cm.Data[item.Key]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %s", what, v.Name, cm.Name, item.Key)
				}
			}
		}
		if v.HostPath != nil && (!path.IsAbs(v.HostPath.Path) || path.Clean(v.HostPath.Path) != v.HostPath.Path) {
			t.Errorf("%s: volume %s: hostPath %q is not a clean absolute path", what, v.Name, v.HostPath.Path)
		}
	}
	used := map[string]bool{}
	names := map[string]bool{}
	for _, c := range spec.Containers {
		for _, e := range validation.IsDNS1123Label(c.Name) {
			t.Errorf("%s: container name %q: %s", what, c.Name, e)
		}
		if names[c.Name] {
			t.Errorf("%s: container %s twice", what, c.Name)
		}
		names[c.Name] = true
		mounts := map[string]bool{}
		for _, vm := range c.VolumeMounts {
			if volumes[vm.Name] == nil {
				t.Errorf("%s: container %s mounts undefined volume %s", what, c.Name, vm.Name)
			}
			if mounts[vm.MountPath] {
				t.Errorf("%s: container %s mounts two volumes at %s", what, c.Name, vm.MountPath)
			}
			mounts[vm.MountPath] = true
			used[vm.Name] = true
		}
		if c.Image == "" || c.ImagePullPolicy == "" {
			t.Errorf("%s: container %s: image %q, pull policy %q", what, c.Name, c.Image, c.ImagePullPolicy)
		}
	}
	for name := range volumes {
		if !used[name] {
			t.Errorf("%s: volume %s is never mounted", what, name)
		}
	}
}

func TestRuntimeClass(t *testing.T) {
	m := loadManifests(t)
	rc := find[*nodev1.RuntimeClass](t, m, handlerName)
	if rc.Handler != handlerName {
		t.Errorf("RuntimeClass %s: handler %q, want %q", rc.Name, rc.Handler, handlerName)
	}
	for _, e := range validation.IsDNS1123Label(rc.Handler) {
		t.Errorf("handler %q: %s", rc.Handler, e)
	}
	if rc.Overhead == nil || rc.Overhead.PodFixed.Memory().IsZero() || rc.Overhead.PodFixed.Cpu().IsZero() {
		t.Errorf("RuntimeClass %s: overhead %v, want the shim's memory and CPU", rc.Name, rc.Overhead)
	}
	if rc.Scheduling == nil || rc.Scheduling.NodeSelector[nodeLabel] != "true" {
		t.Fatalf("RuntimeClass %s: scheduling %v, want node selector %s=true", rc.Name, rc.Scheduling, nodeLabel)
	}
	// The RuntimeClass sends pods exactly where the DaemonSets install and advertise.
	for _, ds := range []string{"rune-deploy", "rune-device-plugin"} {
		sel := find[*appsv1.DaemonSet](t, m, ds).Spec.Template.Spec.NodeSelector
		if fmt.Sprint(sel) != fmt.Sprint(rc.Scheduling.NodeSelector) {
			t.Errorf("DaemonSet %s runs on %v, RuntimeClass schedules on %v", ds, sel, rc.Scheduling.NodeSelector)
		}
	}
}

// criRuntime is the part of containerd's CRI runtime configuration (containerd's
// pkg/cri/config Runtime, internal/cri/config in 2.x) the drop-ins use; strict decoding
// into it refuses any other key.
type criRuntime struct {
	RuntimeType          string         `toml:"runtime_type"`
	ContainerAnnotations []string       `toml:"container_annotations"`
	PodAnnotations       []string       `toml:"pod_annotations"`
	Options              map[string]any `toml:"options"`
}

type criRuntimes struct {
	Containerd struct {
		Runtimes map[string]criRuntime `toml:"runtimes"`
	} `toml:"containerd"`
}

// containerdConfig covers both configuration versions: 2 (containerd 1.6/1.7, CRI plugin
// io.containerd.grpc.v1.cri) and 3 (containerd 2.x, io.containerd.cri.v1.runtime).
type containerdConfig struct {
	Version int `toml:"version"`
	Plugins struct {
		CRIv2 *criRuntimes `toml:"io.containerd.grpc.v1.cri"`
		CRIv3 *criRuntimes `toml:"io.containerd.cri.v1.runtime"`
	} `toml:"plugins"`
}

func parseContainerdConfig(data []byte) (*containerdConfig, error) {
	var c containerdConfig
	if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return nil, errors.New(strict.String())
		}
		return nil, err
	}
	return &c, nil
}

func TestContainerdConfigs(t *testing.T) {
	m := loadManifests(t)
	rc := find[*nodev1.RuntimeClass](t, m, handlerName)
	for _, tc := range []struct {
		file    string
		version int
	}{
		{"containerd/containerd-1.6-1.7.toml", 2},
		{"containerd/containerd-2.x.toml", 3},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := parseContainerdConfig(data)
			if err != nil {
				t.Fatalf("%s: %v", tc.file, err)
			}
			if c.Version != tc.version {
				t.Errorf("version %d, want %d", c.Version, tc.version)
			}
			cri := c.Plugins.CRIv2
			if tc.version == 3 {
				cri = c.Plugins.CRIv3
				if c.Plugins.CRIv2 != nil {
					t.Error("a version 3 configuration with the version 2 CRI plugin section")
				}
			} else if c.Plugins.CRIv3 != nil {
				t.Error("a version 2 configuration with the version 3 CRI plugin section")
			}
			if cri == nil || len(cri.Containerd.Runtimes) != 1 {
				t.Fatalf("want exactly one runtime in the CRI plugin section, got %+v", cri)
			}
			r, ok := cri.Containerd.Runtimes[rc.Handler]
			if !ok {
				t.Fatalf("no runtime named after the RuntimeClass handler %q: %v", rc.Handler, cri.Containerd.Runtimes)
			}
			if r.RuntimeType != runtimeType {
				t.Errorf("runtime_type %q, want %q", r.RuntimeType, runtimeType)
			}
			checkAnnotationPatterns(t, r)
			opts := decodeShimOptions(t, r.Options)
			if opts.ConfigPath != shimconfig.DefaultPath {
				t.Errorf("options ConfigPath %q, want the shim's %q", opts.ConfigPath, shimconfig.DefaultPath)
			}
			if dst := installerEnv(t, m)["CONFIG_DST"]; opts.ConfigPath != dst {
				t.Errorf("options ConfigPath %q, but rune-deploy installs the configuration as %q", opts.ConfigPath, dst)
			}
		})
	}
}

// checkAnnotationPatterns: containerd passes a container annotation to the runtime when a
// container_annotations pattern matches it (path.Match, as containerd's CRI does). The enclave settings must pass;
// Kubernetes' own annotations need not; no pod annotation may pass (it would reach the
// sandbox container).
func checkAnnotationPatterns(t *testing.T, r criRuntime) {
	t.Helper()
	passes := func(key string) bool {
		for _, p := range r.ContainerAnnotations {
			if ok, err := path.Match(p, key); err != nil {
				t.Errorf("container_annotations pattern %q: %v", p, err)
			} else if ok {
				return true
			}
		}
		return false
	}
	for _, key := range []string{deviceplugin.AnnotationRuntimeArgs, enclave.AnnotationType, enclave.AnnotationPath,
		enclave.AnnotationArgs, enclave.AnnotationLogLevel, enclave.AnnotationRAType} {
		if !passes(key) {
			t.Errorf("container annotation %s does not reach rune (container_annotations %q)", key, r.ContainerAnnotations)
		}
	}
	for _, key := range []string{"io.kubernetes.cri.sandbox-id", "io.kubernetes.container.hash", "enclavex"} {
		if passes(key) {
			t.Errorf("container annotation %s reaches rune (container_annotations %q)", key, r.ContainerAnnotations)
		}
	}
	if len(r.PodAnnotations) != 0 {
		t.Errorf("pod_annotations %q: pod annotations would reach the sandbox container too", r.PodAnnotations)
	}
}

// decodeShimOptions decodes a runtime's options as containerd does for a runtime type other
// than runc's (its generic runtime options, what the shim accepts), strictly.
func decodeShimOptions(t *testing.T, opts map[string]any) *runtimeoptions.Options {
	t.Helper()
	data, err := toml.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	var o runtimeoptions.Options
	if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&o); err != nil {
		t.Fatalf("runtime options %v are not containerd's runtimeoptions: %v", opts, err)
	}
	return &o
}

func TestContainerdConfigParserRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown runtime key": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.rune]\nruntime_typ = \"x\"\n",
		"unknown top key":     "version = 2\nroot = \"/x\"\n",
		"duplicate table":     "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.rune]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.rune]\n",
		"not TOML":            "version = \n",
	} {
		if _, err := parseContainerdConfig([]byte(doc)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestShimConfig(t *testing.T) {
	m := loadManifests(t)
	cm := find[*corev1.ConfigMap](t, m, "rune-config")
	data, ok := cm.Data["config.toml"]
	if !ok || len(cm.Data) != 1 || len(cm.BinaryData) != 0 {
		t.Fatalf("ConfigMap %s: want exactly the key config.toml, got %v", cm.Name, cm.Data)
	}
	cfg, err := shimconfig.Parse([]byte(data))
	if err != nil {
		t.Fatalf("config.toml does not pass the shim's strict parser: %v", err)
	}
	env := installerEnv(t, m)
	if want := env["INSTALL_DIR"] + "/bin/rune"; cfg.Rune.Path != want {
		t.Errorf("rune.path %q, but rune-deploy installs rune as %q", cfg.Rune.Path, want)
	}
	if cfg.Rune.Root != env["RUNE_ROOT"] {
		t.Errorf("rune.root %q, but rune-deploy looks for rune containers in %q", cfg.Rune.Root, env["RUNE_ROOT"])
	}
	if cfg.Rune.Root != shimconfig.DefaultRuneRoot {
		t.Errorf("rune.root %q, the shim's default is %q", cfg.Rune.Root, shimconfig.DefaultRuneRoot)
	}
}

// scriptDefaults reads the installer's `: "${NAME:=default}"` lines.
func scriptDefaults(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("installer/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^: "\$\{([A-Z_]+):=([^}]*)\}"`).FindAllSubmatch(data, -1) {
		out[string(m[1])] = string(m[2])
	}
	if len(out) < 10 {
		t.Fatalf("found only %d defaults in install.sh", len(out))
	}
	return out
}

// installerEnv is the installer container's environment: the script's defaults overridden by
// the DaemonSet's env.
func installerEnv(t *testing.T, m *manifests) map[string]string {
	t.Helper()
	env := scriptDefaults(t)
	c := onlyContainer(t, find[*appsv1.DaemonSet](t, m, "rune-deploy"))
	for _, e := range c.Env {
		if _, known := env[e.Name]; !known {
			t.Errorf("rune-deploy: env %s is not a setting of install.sh", e.Name)
		}
		if e.ValueFrom != nil {
			t.Errorf("rune-deploy: env %s comes from elsewhere; the tests want literal values", e.Name)
		}
		env[e.Name] = e.Value
	}
	return env
}

func onlyContainer(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	if len(ds.Spec.Template.Spec.Containers) != 1 || len(ds.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("DaemonSet %s: want one container", ds.Name)
	}
	return &ds.Spec.Template.Spec.Containers[0]
}

// hostMounts maps each hostPath volume mounted by c to its mount.
func hostMounts(ds *appsv1.DaemonSet, c *corev1.Container) map[string]corev1.VolumeMount {
	vols := map[string]*corev1.HostPathVolumeSource{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			vols[v.Name] = v.HostPath
		}
	}
	out := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		if hp := vols[vm.Name]; hp != nil {
			out[hp.Path] = vm
		}
	}
	return out
}

// checkHostView: every node path a program looks at under hostRoot is inside a hostPath
// volume mounted at hostRoot + its node path, so that what it sees is the node's.
func checkHostView(t *testing.T, what string, mounts map[string]corev1.VolumeMount, hostRoot string, nodePaths ...string) {
	t.Helper()
	for host, vm := range mounts {
		if strings.HasPrefix(vm.MountPath, hostRoot+"/") && vm.MountPath != hostRoot+host {
			t.Errorf("%s: node %s is mounted at %s; the program looks for it at %s", what, host, vm.MountPath, hostRoot+host)
		}
	}
	for _, p := range nodePaths {
		covered := false
		for host, vm := range mounts {
			if (p == host || strings.HasPrefix(p, host+"/")) && vm.MountPath == hostRoot+host {
				covered = true
			}
		}
		if !covered {
			t.Errorf("%s: node path %s is not mounted under %s", what, p, hostRoot)
		}
	}
}

func TestInstallerDaemonSet(t *testing.T) {
	m := loadManifests(t)
	ds := find[*appsv1.DaemonSet](t, m, "rune-deploy")
	c := onlyContainer(t, ds)
	env := installerEnv(t, m)
	if !ds.Spec.Template.Spec.HostPID {
		t.Error("hostPID is off: nsenter --target 1 would not reach the node's containerd")
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the installer is not privileged: it cannot enter the node's namespaces")
	}
	if want := []string{"/usr/local/bin/rune-deploy", "run"}; !slices.Equal(c.Command, want) {
		t.Errorf("command %q, want %q", c.Command, want)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.Exec == nil || !slices.Contains(c.ReadinessProbe.Exec.Command, env["READY_FILE"]) {
		t.Errorf("readiness probe %v does not look at the installer's ready file %s", c.ReadinessProbe, env["READY_FILE"])
	}
	if g := ds.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < 60 {
		t.Errorf("termination grace period %v leaves no time to uninstall", g)
	}
	checkHostView(t, "rune-deploy", hostMounts(ds, c), env["HOST_ROOT"],
		env["INSTALL_DIR"], env["SHIM_LINK_DIR"], path.Dir(env["CONFIG_DST"]), path.Dir(env["CONTAINERD_CONFIG"]),
		env["CONTAINERD_CONF_D"], env["RUNE_ROOT"])
	// The ConfigMap is where the script reads config.toml.
	found := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path.Dir(env["CONFIG_SRC"]) {
			for _, v := range ds.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil && slices.ContainsFunc(v.ConfigMap.Items, func(i corev1.KeyToPath) bool {
					return i.Path == path.Base(env["CONFIG_SRC"])
				}) {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("no ConfigMap volume provides %s", env["CONFIG_SRC"])
	}
}

func TestDevicePluginDaemonSet(t *testing.T) {
	m := loadManifests(t)
	ds := find[*appsv1.DaemonSet](t, m, "rune-device-plugin")
	c := onlyContainer(t, ds)
	if want := []string{"/usr/local/bin/rune-device-plugin"}; !slices.Equal(c.Command, want) {
		t.Errorf("command %q, want %q", c.Command, want)
	}
	// The args are the command's own flags, with values it accepts.
	var cfg deviceplugin.Config
	fs := flag.NewFlagSet("rune-device-plugin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	fs.String("log-level", "info", "")
	if err := fs.Parse(c.Args); err != nil || fs.NArg() != 0 {
		t.Fatalf("args %q: %v (left over: %q)", c.Args, err, fs.Args())
	}
	if _, err := deviceplugin.New(cfg); err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	if cfg.SimSlots == 0 {
		t.Error("the simulated TEE is disabled: the example pod could not be scheduled")
	}
	mounts := hostMounts(ds, c)
	kubeletDir := path.Clean(pb.DevicePluginPath)
	if vm, ok := mounts[kubeletDir]; !ok || vm.MountPath != cfg.PluginDir || vm.ReadOnly {
		t.Errorf("the kubelet's %s is mounted as %+v, want it writable at -plugin-dir %s", kubeletDir, vm, cfg.PluginDir)
	}
	checkHostView(t, "rune-device-plugin", mounts, cfg.HostRoot,
		deviceplugin.SysfsNodeDir, tee.TSMReportDir, tee.AESMSocketDir,
		"/dev/sgx_enclave", "/dev/sgx_provision", "/dev/tdx_guest", "/dev/sev-guest")
	for host, vm := range mounts {
		if host != kubeletDir && !vm.ReadOnly {
			t.Errorf("node %s is writable in the device plugin", host)
		}
	}
	sc := c.SecurityContext
	if sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("security context %+v: the device plugin needs no privilege and no capability", sc)
	}
}

func TestPodExample(t *testing.T) {
	m := loadManifests(t)
	pod := find[*corev1.Pod](t, m, "hello-enclave")
	if pod.Spec.RuntimeClassName == nil {
		t.Fatal("no runtimeClassName")
	}
	find[*nodev1.RuntimeClass](t, m, *pod.Spec.RuntimeClassName)
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	// rune reads the enclave settings from the container's environment exactly so.
	var env []string
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s is not a literal", e.Name)
		}
		env = append(env, e.Name+"="+e.Value)
	}
	spec := &specs.Spec{Process: &specs.Process{Env: env, Args: append(slices.Clone(c.Command), c.Args...)}}
	s, err := enclave.FromSpec(spec)
	if err != nil || s == nil {
		t.Fatalf("rune's enclave settings from the pod: %v, %v", s, err)
	}
	if s.Type != attestation.Sim || s.RuntimePath != "builtin:wasm" {
		t.Errorf("enclave %s with %s, want sim with builtin:wasm", s.Type, s.RuntimePath)
	}
	if len(spec.Process.Env) != 0 {
		t.Errorf("env left to the workload: %v", spec.Process.Env)
	}
	// Extended resources: only the device plugin's, whole numbers, requests equal to limits.
	sawSim := false
	for name, q := range c.Resources.Limits {
		if strings.Contains(string(name), "/") {
			if !slices.Contains(deviceplugin.Resources, string(name)) {
				t.Errorf("resource %s is not one the device plugin advertises (%v)", name, deviceplugin.Resources)
			}
			if q.Value() < 1 || q.MilliValue() != q.Value()*1000 {
				t.Errorf("resource %s: %s is not a positive whole number", name, q.String())
			}
			if r, ok := c.Resources.Requests[name]; ok && r.Cmp(q) != 0 {
				t.Errorf("resource %s: request %s differs from limit %s", name, r.String(), q.String())
			}
			sawSim = sawSim || name == deviceplugin.ResourceSim
		}
	}
	if !sawSim {
		t.Errorf("the pod does not ask for %s", deviceplugin.ResourceSim)
	}
	if !slices.Equal(c.Command, []string{"/app/hello.wasm"}) {
		t.Errorf("command %q, want the module the example image holds", c.Command)
	}
}

// TestImages: the node components share one image, every image is one that
// image/Dockerfile builds and README.md tells how to build, and the paths the manifests use
// are where the Dockerfile puts things.
func TestImages(t *testing.T) {
	m := loadManifests(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("image/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]string{}
	for _, o := range m.all() {
		var spec *corev1.PodSpec
		switch v := o.(type) {
		case *appsv1.DaemonSet:
			spec = &v.Spec.Template.Spec
		case *corev1.Pod:
			spec = &v.Spec
		default:
			continue
		}
		for _, c := range spec.Containers {
			images[o.(metav1.Object).GetName()+"/"+c.Name] = c.Image
		}
	}
	tags := map[string]bool{}
	for who, img := range images {
		repo, tag, ok := strings.Cut(img, ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("%s: image %q has no pinned tag", who, img)
		}
		tags[tag] = true
		want := exampleImage
		if strings.HasPrefix(who, "rune-") {
			want = nodeImage
		}
		if repo != want {
			t.Errorf("%s: image %q, want %s", who, img, want)
		}
		target := strings.TrimPrefix(repo, imagePrefix)
		if target == "inclavare-node" {
			target = "node"
		}
		build := fmt.Sprintf("docker build -f deploy/image/Dockerfile --target %s -t %s .", target, img)
		if !bytes.Contains(readme, []byte(build)) || !bytes.Contains(dockerfile, []byte(build)) {
			t.Errorf("%s: README.md and image/Dockerfile do not both say `%s`", who, build)
		}
		if !regexp.MustCompile(`(?m)^FROM \S+ AS ` + regexp.QuoteMeta(target) + `$`).Match(dockerfile) {
			t.Errorf("image/Dockerfile has no stage %s", target)
		}
	}
	if len(tags) != 1 {
		t.Errorf("images carry different tags: %v", images)
	}

	// COPY sources exist in the repository, and the destinations are the paths used.
	copies := map[string]string{} // destination → source line
	for _, line := range strings.Split(string(dockerfile), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" {
			continue
		}
		srcs := f[1 : len(f)-1]
		if strings.HasPrefix(srcs[0], "--from=") {
			srcs = srcs[1:]
		} else {
			for _, s := range srcs {
				if _, err := os.Stat(filepath.Join("..", s)); err != nil {
					t.Errorf("Dockerfile copies %s: %v", s, err)
				}
			}
		}
		for _, s := range srcs {
			dst := f[len(f)-1]
			if strings.HasSuffix(dst, "/") {
				dst += path.Base(s)
			}
			copies[dst] = line
		}
	}
	env := installerEnv(t, m)
	var want []string
	for _, b := range strings.Fields(installerBinaries(t)) {
		want = append(want, env["ARTIFACTS"]+"/bin/"+b)
	}
	want = append(want, env["ARTIFACTS"]+"/containerd/containerd-1.6-1.7.toml", env["ARTIFACTS"]+"/containerd/containerd-2.x.toml")
	for _, name := range []string{"rune-deploy", "rune-device-plugin"} {
		want = append(want, onlyContainer(t, find[*appsv1.DaemonSet](t, m, name)).Command[0])
	}
	for _, w := range want {
		if _, ok := copies[w]; !ok {
			t.Errorf("image/Dockerfile puts nothing at %s", w)
		}
	}
	for _, cmd := range []string{"./cmd/rune", "./cmd/init-runelet", "./cmd/containerd-shim-rune-v2", "./cmd/rune-carrier-helper", "./cmd/rune-device-plugin"} {
		if !regexp.MustCompile(`(?m)go build .* ` + regexp.QuoteMeta(cmd) + `( |$)`).Match(dockerfile) {
			t.Errorf("image/Dockerfile does not build %s", cmd)
		}
		if _, err := os.Stat(filepath.Join("..", cmd)); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
	}
}

func installerBinaries(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("installer/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^BINARIES="([^"]+)"$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("install.sh has no BINARIES")
	}
	got := strings.Fields(string(m[1]))
	sort.Strings(got)
	if want := []string{"containerd-shim-rune-v2", "init-runelet", "rune", "rune-carrier-helper"}; !slices.Equal(got, want) {
		t.Errorf("install.sh installs %v, want %v", got, want)
	}
	return string(m[1])
}
