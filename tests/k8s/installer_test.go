package k8s

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// installerNode is where the installer puts things on the test's node: the paths of
// deploy/README.md's "Another containerd" section, all below the cluster's directory.
type installerNode struct {
	installDir, linkDir, configDst string
}

// testInstaller: deploy/rune-deploy.yaml, with the changes deploy/README.md lists for a node
// whose containerd is not the system's (paths, the containerd binary, how to restart it, the
// shim configuration's cgroup driver), installs rune on a node whose containerd has no rune
// handler: binaries, shim link, config.toml, the handler (1.x block or 2.x drop-in), a
// containerd restart; then a rune pod runs with the installed shim. Deleting the DaemonSet
// uninstalls: containerd's configuration byte for byte as it was, restarted, and no file of
// the installation left.
func testInstaller(e *env) {
	t := e.t
	node := installerNode{
		installDir: filepath.Join(e.Dir, "node", "opt", "inclavare-containers"),
		linkDir:    filepath.Join(e.Dir, "node", "bin"),
		configDst:  filepath.Join(e.Dir, "node", "etc", "inclavare-containers", "config.toml"),
	}
	// The node before: containerd without the rune handler, finding shims in linkDir only.
	if err := e.StopContainerd(); err != nil {
		t.Fatal(err)
	}
	if err := e.writeContainerdConfig(false); err != nil {
		t.Fatal(err)
	}
	e.ShimDir = node.linkDir
	if err := e.StartContainerd(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The harness's own handler again, for whatever runs after.
		if err := e.StopContainerd(); err != nil {
			t.Error(err)
		}
		e.ShimDir = e.Bin
		if err := e.writeContainerdConfig(true); err != nil {
			t.Error(err)
		}
		if err := e.StartContainerd(); err != nil {
			t.Error(err)
		}
	}()
	configBefore, err := os.ReadFile(e.ContainerdConfig)
	if err != nil {
		t.Fatal(err)
	}
	confDBefore, _ := listTree(e.ContainerdConfD)
	pidBefore := e.containerd.pid()

	objects := installerObjects(e, node)
	for _, o := range objects {
		e.applyObject(o)
	}
	installer := e.daemonSetPod(systemNS, "app.kubernetes.io/name=rune-deploy")
	e.waitLogs(systemNS, installer.Name, "rune-deploy: installed")

	for _, b := range []string{"rune", "init-runelet", "containerd-shim-rune-v2", "rune-carrier-helper"} {
		if fi, err := os.Stat(filepath.Join(node.installDir, "bin", b)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("installed %s: %v %v", b, fi, err)
		}
	}
	link := filepath.Join(node.linkDir, "containerd-shim-rune-v2")
	if target, err := os.Readlink(link); err != nil || target != filepath.Join(node.installDir, "bin", "containerd-shim-rune-v2") {
		t.Errorf("shim link %s: %q %v", link, target, err)
	}
	if _, err := os.Stat(node.configDst); err != nil {
		t.Errorf("shim configuration: %v", err)
	}
	if e.containerd.pid() == pidBefore {
		t.Errorf("containerd (pid %d) was not restarted by the installer", pidBefore)
	}
	switch e.Generation {
	case Containerd1:
		if cfg, _ := os.ReadFile(e.ContainerdConfig); !strings.Contains(string(cfg), "# BEGIN inclavare-containers") ||
			!strings.Contains(string(cfg), fmt.Sprintf("ConfigPath = %q", node.configDst)) {
			t.Errorf("containerd's configuration after the installer:\n%s", cfg)
		}
	case Containerd2:
		if d, err := os.ReadFile(filepath.Join(e.ContainerdConfD, "inclavare-rune.toml")); err != nil || !strings.Contains(string(d), node.configDst) {
			t.Errorf("drop-in after the installer: %v\n%s", err, d)
		}
	}
	if err := e.waitCRI(); err != nil {
		t.Fatal(err)
	}

	// A rune pod on the installed runtime: the shim is the installed one.
	e.applyObject(podSpec("installed-rune", "rune", simWasmEnv, "/app/prog.wasm", "sleep"))
	p := e.waitRunning("default", "installed-rune")
	e.waitLogs("default", "installed-rune", "sleeping")
	if res := e.exec("default", "installed-rune", "/app/prog.wasm", "exit", "4"); res.ExitCode != 4 {
		t.Errorf("exec in the installed runtime: %s, want exit 4", res)
	}
	id := containerID(t, p, "main")
	if !e.hasRuneState(id) {
		t.Errorf("rune keeps no state of %s", id)
	}
	shims := e.shimPids()
	if len(shims) != 1 {
		t.Fatalf("rune shims %v, want the pod's one", shims)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", shims[0])); err != nil || exe != filepath.Join(node.installDir, "bin", "containerd-shim-rune-v2") {
		t.Errorf("the pod's shim runs %s (%v), want the installed one", exe, err)
	}
	e.deletePod("default", "installed-rune")
	if err := clients.WaitFor(30*time.Second, "the shim to exit", func() (bool, error) { return len(e.shimPids()) == 0, nil }); err != nil {
		t.Fatal(err)
	}

	// Uninstall: kubectl delete of what was applied.
	pidInstalled := e.containerd.pid()
	for i := len(objects) - 1; i >= 0; i-- {
		data, _ := json.Marshal(objects[i])
		res, err := e.Kubectl(data, "delete", "-f", "-", "--wait=true", "--timeout=150s")
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("kubectl delete: %v %s", err, res)
		}
	}
	if err := clients.WaitFor(time.Minute, "the installer pod to go", func() (bool, error) {
		_, ok := e.pod(systemNS, installer.Name)
		return !ok, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(e.ContainerdConfig); string(got) != string(configBefore) {
		t.Errorf("containerd's configuration after uninstall:\n%s\nbefore:\n%s", got, configBefore)
	}
	if confD, _ := listTree(e.ContainerdConfD); strings.Join(confD, " ") != strings.Join(confDBefore, " ") {
		t.Errorf("conf.d after uninstall: %v, before: %v", confD, confDBefore)
	}
	if e.containerd.pid() == pidInstalled {
		t.Errorf("containerd (pid %d) was not restarted by the uninstall", pidInstalled)
	}
	// The kubelet creates the hostPath directories (DirectoryOrCreate); the installer leaves
	// no file in them.
	err = filepath.WalkDir(filepath.Join(e.Dir, "node"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left by the installer: %s", p)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

// installerObjects are the objects of deploy/rune-deploy.yaml, changed as deploy/README.md
// says for a node whose containerd is not the system's.
func installerObjects(e *env, node installerNode) []any {
	t := e.t
	manifest := repoFile(t, "deploy/rune-deploy.yaml")
	checkImages(e, manifest)
	var objects []any
	for _, d := range manifestDocs(t, manifest) {
		switch d.Kind {
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := json.Unmarshal(d.Raw, &cm); err != nil {
				t.Fatal(err)
			}
			// README step 2: systemd_cgroup as the kubelet's cgroupDriver (cgroupfs here);
			// rune's path and root where this node has them.
			cfg := cm.Data["config.toml"]
			for _, r := range [][2]string{
				{`path = "/opt/inclavare-containers/bin/rune"`, fmt.Sprintf("path = %q", filepath.Join(node.installDir, "bin", "rune"))},
				{`root = "/run/containerd/rune"`, fmt.Sprintf("root = %q", e.RuneRoot)},
				{"systemd_cgroup = true", "systemd_cgroup = false"},
			} {
				if !strings.Contains(cfg, r[0]) {
					t.Fatalf("rune-deploy.yaml's config.toml no longer has %q: update deploy/README.md and this test", r[0])
				}
				cfg = strings.Replace(cfg, r[0], r[1], 1)
			}
			cm.Data["config.toml"] = cfg
			objects = append(objects, &cm)
		case "DaemonSet":
			var ds appsv1.DaemonSet
			if err := json.Unmarshal(d.Raw, &ds); err != nil {
				t.Fatal(err)
			}
			retargetInstaller(e, &ds, node)
			objects = append(objects, &ds)
		default:
			objects = append(objects, json.RawMessage(d.Raw))
		}
	}
	return objects
}

// retargetInstaller points the installer's environment and host paths at the test's node.
func retargetInstaller(e *env, ds *appsv1.DaemonSet, node installerNode) {
	t := e.t
	spec := &ds.Spec.Template.Spec
	// The node's paths, and the volumes that show them to the installer under /host.
	paths := map[string]string{ // volume name → node path
		"install-dir":    node.installDir,
		"shim-link-dir":  node.linkDir,
		"inclavare-etc":  filepath.Dir(node.configDst),
		"containerd-etc": filepath.Dir(e.ContainerdConfig),
		"rune-state":     e.RuneRoot,
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if p, ok := paths[v.Name]; ok {
			if v.HostPath == nil {
				t.Fatalf("volume %s is no longer a hostPath: update the test", v.Name)
			}
			v.HostPath.Path = p
			delete(paths, v.Name)
		}
	}
	if len(paths) != 0 {
		t.Fatalf("rune-deploy.yaml lacks the volumes %v: update deploy/README.md and this test", paths)
	}
	c := &spec.Containers[0]
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.HostPath != nil {
				m.MountPath = "/host" + v.HostPath.Path
			}
		}
	}
	env := map[string]string{
		"INSTALL_DIR":        node.installDir,
		"SHIM_LINK_DIR":      node.linkDir,
		"CONFIG_DST":         node.configDst,
		"CONTAINERD_CONFIG":  e.ContainerdConfig,
		"CONTAINERD_CONF_D":  e.ContainerdConfD,
		"RUNE_ROOT":          e.RuneRoot,
		"CONTAINERD":         e.Containerd,
		"RESTART_CONTAINERD": e.RestartContainerd,
		// This machine's PID 1 cannot be entered (its namespaces are not readable): run node
		// commands in the test's own namespaces, which are the host's.
		"HOST_EXEC": fmt.Sprintf("nsenter --target %d --mount --uts --ipc --net --pid --", os.Getpid()),
	}
	for i := range c.Env {
		if v, ok := env[c.Env[i].Name]; ok {
			c.Env[i].Value = v
			delete(env, c.Env[i].Name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: env[k]})
	}
}

// waitCRI waits until containerd's CRI answers (after a restart).
func (e *env) waitCRI() error {
	return clients.WaitFor(time.Minute, "containerd's CRI", func() (bool, error) {
		out, err := e.Ctr("plugins", "ls")
		return err == nil && strings.Contains(out, "cri"), err
	})
}
