package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	corev1 "k8s.io/api/core/v1"
)

// hostExec stands in for `nsenter --target 1 --mount …`: it runs a command "on the node",
// whose files are under $HOST_ROOT here, so node paths in the arguments are rewritten. The
// containerd it runs is the real one (checking and dumping configurations); systemctl is
// recorded instead of run; with FAKE_CONTAINERD2 set, containerd is a stand-in for a 2.x
// release, which this machine does not have.
const hostExec = `#!/bin/sh
n=$#
i=0
while [ "$i" -lt "$n" ]; do
	a=$1
	shift
	case $a in /*) if [ -e "$HOST_ROOT$a" ]; then a=$HOST_ROOT$a; fi ;; esac
	set -- "$@" "$a"
	i=$((i + 1))
done
case $1 in
systemctl)
	echo "$*" >>"$RESTART_LOG"
	exit 0
	;;
containerd)
	if [ -n "${FAKE_CONTAINERD2:-}" ]; then
		case $2 in
		--version) echo "containerd github.com/containerd/containerd/v2 v2.2.1 0123abc" ;;
		--config) cat "$3" >/dev/null ;;
		*) exit 1 ;;
		esac
		exit
	fi
	;;
esac
exec "$@"
`

// debianContainerdConfig is Debian 12's /etc/containerd/config.toml.
const debianContainerdConfig = `version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
`

var installedBinaries = []string{"rune", "init-runelet", "containerd-shim-rune-v2", "rune-carrier-helper"}

// testNode is a node's file tree, the installer image's artifacts and the installer's
// environment.
type testNode struct {
	t        *testing.T
	root     string
	base     string
	env      []string
	shimConf string
}

func newTestNode(t *testing.T, extraEnv ...string) *testNode {
	t.Helper()
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Fatalf("the installer tests check configurations with the real containerd: %v (scripts/install-deps.sh installs it)", err)
	}
	base := t.TempDir()
	n := &testNode{t: t, root: filepath.Join(base, "node"), base: base}
	for _, d := range []string{n.root, filepath.Join(base, "artifacts/bin"), filepath.Join(base, "artifacts/containerd"), filepath.Join(base, "config")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range installedBinaries {
		writeFile(t, filepath.Join(base, "artifacts/bin", b), "#!/bin/sh\necho "+b+"\n", 0o755)
	}
	for _, f := range []string{"containerd-1.6-1.7.toml", "containerd-2.x.toml"} {
		data, err := os.ReadFile(filepath.Join("containerd", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(base, "artifacts/containerd", f), string(data), 0o644)
	}
	// The shim configuration the DaemonSet's ConfigMap holds.
	n.shimConf = find[*corev1.ConfigMap](t, loadManifests(t), "rune-config").Data["config.toml"]
	writeFile(t, filepath.Join(base, "config/config.toml"), n.shimConf, 0o644)
	writeFile(t, filepath.Join(base, "hostexec"), hostExec, 0o755)
	n.env = append(os.Environ(),
		"HOST_ROOT="+n.root,
		"HOST_EXEC="+filepath.Join(base, "hostexec"),
		"ARTIFACTS="+filepath.Join(base, "artifacts"),
		"CONFIG_SRC="+filepath.Join(base, "config/config.toml"),
		"READY_FILE="+filepath.Join(base, "ready"),
		"RESTART_LOG="+filepath.Join(base, "restarts.log"),
		"CONTAINERD_CONFIG_VERSION=",
	)
	n.env = append(n.env, extraEnv...)
	return n
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// write puts a file on the node.
func (n *testNode) write(nodePath, content string) { writeFile(n.t, n.path(nodePath), content, 0o644) }

func (n *testNode) path(nodePath string) string { return filepath.Join(n.root, nodePath) }

func (n *testNode) read(nodePath string) string {
	n.t.Helper()
	data, err := os.ReadFile(n.path(nodePath))
	if err != nil {
		n.t.Fatal(err)
	}
	return string(data)
}

func (n *testNode) exists(nodePath string) bool {
	_, err := os.Lstat(n.path(nodePath))
	return err == nil
}

func (n *testNode) command(args ...string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", append([]string{"installer/install.sh"}, args...)...)
	cmd.Env = n.env
	return cmd
}

// run runs the installer and returns its output; wantOK says whether it must succeed.
func (n *testNode) run(wantOK bool, args ...string) string {
	n.t.Helper()
	out, err := n.command(args...).CombinedOutput()
	if wantOK && err != nil {
		n.t.Fatalf("rune-deploy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !wantOK && err == nil {
		n.t.Fatalf("rune-deploy %s succeeded, want a refusal\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// restarts counts the containerd restarts the installer asked for.
func (n *testNode) restarts() int {
	data, err := os.ReadFile(filepath.Join(n.base, "restarts.log"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		n.t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line != "systemctl restart containerd" {
			n.t.Errorf("the installer ran %q on the node", line)
		}
	}
	return strings.Count(string(data), "\n")
}

// snapshot lists every file of the node tree with its content (links with their target).
func (n *testNode) snapshot() string {
	n.t.Helper()
	var b strings.Builder
	err := filepath.Walk(n.root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.root, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s\n", rel, target)
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %v %q\n", rel, fi.Mode(), data)
		}
		return nil
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return b.String()
}

// checkInstalled: the binaries, the link containerd finds the shim by, and config.toml.
func (n *testNode) checkInstalled() {
	n.t.Helper()
	for _, b := range installedBinaries {
		p := "/opt/inclavare-containers/bin/" + b
		fi, err := os.Stat(n.path(p))
		if err != nil || fi.Mode().Perm() != 0o755 || n.read(p) != "#!/bin/sh\necho "+b+"\n" {
			n.t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	if target, err := os.Readlink(n.path("/usr/local/bin/containerd-shim-rune-v2")); err != nil || target != "/opt/inclavare-containers/bin/containerd-shim-rune-v2" {
		n.t.Errorf("shim link: %q, %v", target, err)
	}
	if got := n.read("/etc/inclavare-containers/config.toml"); got != n.shimConf {
		n.t.Errorf("config.toml on the node:\n%s\nwant the ConfigMap's:\n%s", got, n.shimConf)
	}
}

// dumpRuneRuntime has the real containerd load the node's configuration and returns the
// runtime rune of its CRI plugin as containerd understood it, and the dump.
func (n *testNode) dumpRuneRuntime() (map[string]any, map[string]any) {
	n.t.Helper()
	out, err := exec.Command("containerd", "--config", n.path("/etc/containerd/config.toml"), "config", "dump").Output()
	if err != nil {
		n.t.Fatalf("containerd config dump: %v", err)
	}
	var dump map[string]any
	if err := toml.Unmarshal(out, &dump); err != nil {
		n.t.Fatalf("containerd's dump: %v", err)
	}
	cri := dig(dump, "plugins", "io.containerd.grpc.v1.cri")
	rt, _ := dig(cri, "containerd", "runtimes", "rune").(map[string]any)
	return rt, cri.(map[string]any)
}

// containerd2RuneRuntime has containerd 2.x load the node's configuration, its imports
// pointed into the node, and returns the CRI runtime rune as containerd understood it.
func (n *testNode) containerd2RuneRuntime(containerd string) map[string]any {
	n.t.Helper()
	config := strings.ReplaceAll(n.read("/etc/containerd/config.toml"), "/etc/containerd/conf.d/", n.path("/etc/containerd/conf.d")+"/")
	path := filepath.Join(n.base, "containerd2.toml")
	writeFile(n.t, path, config, 0o644)
	var stderr bytes.Buffer
	cmd := exec.Command(containerd, "--config", path, "config", "dump")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("containerd 2.x config dump: %v\n%s", err, stderr.String())
	}
	var dump map[string]any
	if err := toml.Unmarshal(out, &dump); err != nil {
		n.t.Fatalf("containerd 2.x's dump: %v\n%s", err, out)
	}
	rt, _ := dig(dump, "plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "rune").(map[string]any)
	return rt
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestInstallerContainerd1(t *testing.T) {
	n := newTestNode(t)
	n.write("/etc/containerd/config.toml", debianContainerdConfig)
	before := n.snapshot()

	n.run(true, "install")
	n.checkInstalled()
	if n.restarts() != 1 {
		t.Errorf("%d containerd restarts, want 1", n.restarts())
	}
	rt, cri := n.dumpRuneRuntime()
	if rt == nil {
		t.Fatalf("containerd's configuration has no runtime rune:\n%s", n.read("/etc/containerd/config.toml"))
	}
	if rt["runtime_type"] != runtimeType || fmt.Sprint(rt["container_annotations"]) != "[enclave.*]" ||
		dig(rt, "options", "ConfigPath") != "/etc/inclavare-containers/config.toml" {
		t.Errorf("containerd reads the runtime rune as %v", rt)
	}
	// The node's own settings stay.
	if dig(cri, "cni", "bin_dir") != "/usr/lib/cni" || dig(cri, "containerd", "runtimes", "runc", "runtime_type") != "io.containerd.runc.v2" {
		t.Errorf("the node's CRI settings changed: cni %v, runc %v", dig(cri, "cni"), dig(cri, "containerd", "runtimes", "runc"))
	}
	if !strings.HasPrefix(n.read("/etc/containerd/config.toml"), debianContainerdConfig) {
		t.Error("the node's lines of config.toml changed")
	}

	// Again: nothing changes, containerd is not restarted.
	installed := n.snapshot()
	n.run(true, "install")
	if n.snapshot() != installed || n.restarts() != 1 {
		t.Errorf("a second install changed the node (restarts %d)", n.restarts())
	}

	n.run(true, "cleanup")
	if n.restarts() != 2 {
		t.Errorf("%d containerd restarts after cleanup, want 2", n.restarts())
	}
	if after := n.snapshot(); after != before {
		t.Errorf("after cleanup the node has\n%s\nbefore install it had\n%s", after, before)
	}
}

// TestInstallerKubeadmConfig: the configuration kubeadm set-ups use (`containerd config
// default` with SystemdCgroup = true for runc) keeps its runtimes as they are.
func TestInstallerKubeadmConfig(t *testing.T) {
	out, err := exec.Command("containerd", "config", "default").Output()
	if err != nil {
		t.Fatalf("containerd config default: %v", err)
	}
	config := strings.Replace(string(out), "SystemdCgroup = false", "SystemdCgroup = true", 1)
	if config == string(out) {
		t.Fatal("containerd's default configuration has no SystemdCgroup = false to change")
	}
	n := newTestNode(t)
	n.write("/etc/containerd/config.toml", config)
	before := n.snapshot()
	n.run(true, "install")
	rt, cri := n.dumpRuneRuntime()
	if rt["runtime_type"] != runtimeType {
		t.Errorf("runtime rune: %v", rt)
	}
	if dig(cri, "containerd", "runtimes", "runc", "options", "SystemdCgroup") != true {
		t.Errorf("runc lost SystemdCgroup: %v", dig(cri, "containerd", "runtimes", "runc"))
	}
	if strings.Contains(n.read("/etc/containerd/config.toml"), "default runtimes") {
		t.Error("runtimes copied into the block although the file defines its own")
	}
	n.run(true, "cleanup")
	if after := n.snapshot(); after != before {
		t.Errorf("after cleanup:\n%s\nbefore:\n%s", after, before)
	}
}

// TestInstallerNoContainerdConfig: a node running containerd with its defaults (no file) gets a
// version 2 file, chosen from the real containerd's version, and loses it again on cleanup.
func TestInstallerNoContainerdConfig(t *testing.T) {
	n := newTestNode(t)
	n.write("/etc/containerd/.keep", "")
	before := n.snapshot()
	n.run(true, "install")
	if rt, _ := n.dumpRuneRuntime(); rt["runtime_type"] != runtimeType {
		t.Errorf("runtime rune: %v", rt)
	}
	if !strings.HasPrefix(n.read("/etc/containerd/config.toml"), "version = 2\n") {
		t.Errorf("new containerd configuration:\n%s", n.read("/etc/containerd/config.toml"))
	}
	n.run(true, "cleanup")
	if after := n.snapshot(); after != before {
		t.Errorf("after cleanup:\n%s\nbefore:\n%s", after, before)
	}
}

// TestInstallerKeepsNodeConfig: a config.toml the node had is kept aside and restored.
func TestInstallerKeepsNodeConfig(t *testing.T) {
	n := newTestNode(t)
	n.write("/etc/containerd/config.toml", debianContainerdConfig)
	n.write("/etc/inclavare-containers/config.toml", "log_level = \"debug\"\n")
	before := n.snapshot()
	n.run(true, "install")
	n.checkInstalled()
	n.run(true, "install")
	n.run(true, "cleanup")
	if after := n.snapshot(); after != before {
		t.Errorf("after cleanup:\n%s\nbefore:\n%s", after, before)
	}
}

// TestInstallerRefuses: what the installer will not do leaves containerd's configuration as
// it was and containerd running.
func TestInstallerRefuses(t *testing.T) {
	ownRuntime := debianContainerdConfig + `
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rune]
  runtime_type = "io.containerd.runc.v2"
`
	tests := []struct {
		name   string
		config string
		setup  func(*testNode)
		want   string
	}{
		{name: "runtime rune of its own", config: ownRuntime, want: "already defines the runtime rune"},
		{name: "quoted runtime name", config: strings.Replace(ownRuntime, "runtimes.rune]", `runtimes."rune"]`, 1), want: "already defines the runtime rune"},
		// A dotted-key definition the pattern cannot see: containerd itself rejects the result.
		{name: "dotted runtime rune", config: debianContainerdConfig + "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes.rune.runtime_type = \"x\"\n", want: "containerd rejects the edited configuration"},
		{name: "not TOML", config: "version = 2\n[plugins\n", want: "containerd rejects the edited configuration"},
		{name: "version 1", config: "[plugins.cri]\n  sandbox_image = \"x\"\n", want: "version 1 configuration"},
		{name: "version 5", config: "version = 5\n", want: "version 5"},
		{name: "foreign shim", config: debianContainerdConfig, setup: func(n *testNode) {
			n.write("/usr/local/bin/containerd-shim-rune-v2", "someone else's")
		}, want: "is not rune-deploy's link"},
		{name: "version 3 imports elsewhere", config: "version = 3\nimports = [\"/etc/other/*.toml\"]\n", want: "imports that include neither"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, "FAKE_CONTAINERD2="+map[bool]string{true: "1"}[strings.HasPrefix(tc.config, "version = 3")])
			n.write("/etc/containerd/config.toml", tc.config)
			if tc.setup != nil {
				tc.setup(n)
			}
			out := n.run(false, "install")
			if !strings.Contains(out, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, out)
			}
			if got := n.read("/etc/containerd/config.toml"); got != tc.config {
				t.Errorf("containerd's configuration changed:\n%s", got)
			}
			if n.restarts() != 0 {
				t.Error("containerd was restarted")
			}
			if n.exists("/etc/containerd/config.toml.rune-deploy.new") {
				t.Error("candidate configuration left behind")
			}
		})
	}
}

// TestInstallerContainerd2 covers containerd 2.x configurations (version 3): a drop-in in
// conf.d and an imports line, each checked by a real containerd 2.x (built with go install,
// as the shim tests do) loading the node's configuration.
func TestInstallerContainerd2(t *testing.T) {
	dropin, err := os.ReadFile("containerd/containerd-2.x.toml")
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	var dir string
	if err == nil {
		var cache string
		if cache, err = clients.TestCacheDir(); err == nil {
			dir, err = clients.InstallContainerd2(goBin, cache)
		}
	}
	if err != nil {
		clients.Unavailable(t, "containerd %s: %v", clients.Containerd2Version, err)
	}
	containerd2 := filepath.Join(dir, "containerd")
	const own = "version = 3\n\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10'\n"
	tests := []struct {
		name       string
		config     string // "" for no file
		wantConfig string
	}{
		{name: "imports added", config: own, wantConfig: "version = 3\nimports = [\"/etc/containerd/conf.d/inclavare-rune.toml\"] # added by rune-deploy\n" + own[len("version = 3\n"):]},
		{name: "conf.d already imported", config: "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n", wantConfig: "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n"},
		// containerd 2.4's own default configuration (containerd config default).
		{name: "version 4", config: "version = 4\nimports = ['/etc/containerd/conf.d/*.toml']\n", wantConfig: "version = 4\nimports = ['/etc/containerd/conf.d/*.toml']\n"},
		{name: "no configuration", wantConfig: "version = 3\nimports = [\"/etc/containerd/conf.d/inclavare-rune.toml\"] # added by rune-deploy\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, "FAKE_CONTAINERD2=1")
			if tc.config != "" {
				n.write("/etc/containerd/config.toml", tc.config)
			} else {
				n.write("/etc/containerd/.keep", "")
			}
			before := n.snapshot()
			n.run(true, "install")
			n.checkInstalled()
			if got := n.read("/etc/containerd/conf.d/inclavare-rune.toml"); got != string(dropin) {
				t.Errorf("drop-in:\n%s", got)
			}
			got := n.read("/etc/containerd/config.toml")
			if got != tc.wantConfig {
				t.Errorf("containerd configuration:\n%s\nwant:\n%s", got, tc.wantConfig)
			}
			rt := n.containerd2RuneRuntime(containerd2)
			if dig(rt, "runtime_type") != "io.containerd.rune.v2" || dig(rt, "options", "ConfigPath") != "/etc/inclavare-containers/config.toml" ||
				fmt.Sprint(dig(rt, "container_annotations")) != "[enclave.*]" {
				t.Errorf("containerd %s understands runtime rune as %v", clients.Containerd2Version, rt)
			}
			if n.restarts() != 1 {
				t.Errorf("%d restarts, want 1", n.restarts())
			}
			n.run(true, "install")
			if n.restarts() != 1 {
				t.Error("a second install restarted containerd")
			}
			n.run(true, "cleanup")
			if after := n.snapshot(); after != before {
				t.Errorf("after cleanup:\n%s\nbefore:\n%s", after, before)
			}
			if n.restarts() != 2 {
				t.Errorf("%d restarts after cleanup, want 2", n.restarts())
			}
		})
	}
}

// TestInstallerCleanupWithRuneContainers: while rune containers exist, their shims need rune:
// cleanup removes nothing.
func TestInstallerCleanupWithRuneContainers(t *testing.T) {
	n := newTestNode(t)
	n.write("/etc/containerd/config.toml", debianContainerdConfig)
	n.run(true, "install")
	n.write("/run/containerd/rune/k8s.io/0123abcd/state.json", "{}")
	installed := n.snapshot()
	out := n.run(false, "cleanup")
	if !strings.Contains(out, "/run/containerd/rune/k8s.io/0123abcd/state.json") || !strings.Contains(out, "rune containers still exist") {
		t.Errorf("cleanup does not say which containers keep it:\n%s", out)
	}
	if n.snapshot() != installed || n.restarts() != 1 {
		t.Error("cleanup changed the node while rune containers exist")
	}
	if err := os.RemoveAll(n.path("/run/containerd/rune/k8s.io/0123abcd")); err != nil {
		t.Fatal(err)
	}
	n.run(true, "cleanup")
	if n.exists("/opt/inclavare-containers/bin/rune") {
		t.Error("rune still installed")
	}
}

// TestInstallerRunAndSIGTERM: the DaemonSet's command installs, reports ready, and uninstalls
// when the pod is deleted (SIGTERM).
func TestInstallerRunAndSIGTERM(t *testing.T) {
	n := newTestNode(t)
	n.write("/etc/containerd/config.toml", debianContainerdConfig)
	before := n.snapshot()
	cmd := n.command("run")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	ready := filepath.Join(n.base, "ready")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("rune-deploy run exited before it was ready: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.checkInstalled()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running after SIGTERM\n%s", out.String())
	}
	if after := n.snapshot(); after != before {
		t.Errorf("after SIGTERM:\n%s\nbefore:\n%s", after, before)
	}
	if _, err := os.Stat(ready); err == nil {
		t.Error("still reports ready")
	}
	if n.restarts() != 2 {
		t.Errorf("%d restarts, want 2", n.restarts())
	}
}

func TestInstallerUsage(t *testing.T) {
	n := newTestNode(t)
	for _, args := range [][]string{nil, {"uninstall"}} {
		err := n.command(args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("rune-deploy %q: %v, want exit status 2", args, err)
		}
	}
}

// TestInstalledConfigLoadsCRI starts the real containerd on the configuration rune-deploy
// writes (made private: its own root, state and sockets) and checks that its CRI plugin loads.
// The control case shows what the installer avoids: the runtime table of rune alone, appended
// to Debian's configuration, leaves containerd without its default runtime runc, and the CRI
// plugin fails.
func TestInstalledConfigLoadsCRI(t *testing.T) {
	if _, err := exec.LookPath("ctr"); err != nil {
		t.Fatalf("ctr (containerd's client) is needed: %v", err)
	}
	n := newTestNode(t)
	n.write("/etc/containerd/config.toml", debianContainerdConfig)
	n.run(true, "install")
	installed := n.read("/etc/containerd/config.toml")

	handler, err := os.ReadFile("containerd/containerd-1.6-1.7.toml")
	if err != nil {
		t.Fatal(err)
	}
	naive := debianContainerdConfig + strings.Replace(string(handler), "version = 2\n", "", 1)

	for _, tc := range []struct {
		name, config, want string
	}{
		{"installed", installed, "ok"},
		{"rune table alone", naive, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := criPluginStatus(t, tc.config); got != tc.want {
				t.Errorf("CRI plugin status %q, want %q", got, tc.want)
			}
		})
	}
}

// criPluginStatus runs containerd on config, with private paths, and returns the status ctr
// reports for the CRI plugin.
func criPluginStatus(t *testing.T, config string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctrd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "containerd.sock")
	private := strings.Replace(config, "version = 2\n", fmt.Sprintf("version = 2\nroot = %q\nstate = %q\n", dir+"/root", dir+"/state"), 1)
	private = strings.ReplaceAll(private, "/var/lib/containerd/opt", dir+"/opt")
	private += fmt.Sprintf("\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n", sock, sock+".ttrpc")
	writeFile(t, filepath.Join(dir, "config.toml"), private, 0o644)
	var log bytes.Buffer
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("ctr", "--address", sock, "plugins", "ls").Output()
		if err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) >= 4 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
					return f[len(f)-1]
				}
			}
			t.Fatalf("ctr plugins ls lists no CRI plugin:\n%s", out)
		}
		select {
		case err := <-exited:
			t.Fatalf("containerd exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd never answered\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInstallerOtherPaths: a node whose containerd is not the system one (another binary,
// another configuration file) and whose shim configuration lives elsewhere: the handler the
// installer adds names that configuration, and containerd named by CONTAINERD checks it.
func TestInstallerOtherPaths(t *testing.T) {
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, "CONFIG_DST=/srv/inclavare/rune.toml", "CONTAINERD="+containerd,
		"CONTAINERD_CONFIG=/srv/containerd/config.toml")
	n.write("/srv/containerd/config.toml", debianContainerdConfig)
	before := n.snapshot()
	n.run(true, "install")
	if got := n.read("/srv/inclavare/rune.toml"); got != n.shimConf {
		t.Errorf("shim configuration at CONFIG_DST:\n%s", got)
	}
	if n.exists("/etc/inclavare-containers/config.toml") || n.exists("/etc/containerd/config.toml") {
		t.Error("the installer wrote the default paths")
	}
	out, err := exec.Command(containerd, "--config", n.path("/srv/containerd/config.toml"), "config", "dump").Output()
	if err != nil {
		t.Fatalf("containerd config dump: %v", err)
	}
	var dump map[string]any
	if err := toml.Unmarshal(out, &dump); err != nil {
		t.Fatal(err)
	}
	if got := dig(dump, "plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "rune", "options", "ConfigPath"); got != "/srv/inclavare/rune.toml" {
		t.Errorf("the runtime rune's ConfigPath is %v, want CONFIG_DST", got)
	}
	n.run(true, "cleanup")
	if after := n.snapshot(); after != before {
		t.Errorf("after cleanup:\n%s\nbefore:\n%s", after, before)
	}

	// The 2.x drop-in names it too.
	n = newTestNode(t, "CONFIG_DST=/srv/inclavare/rune.toml", "FAKE_CONTAINERD2=1")
	n.write("/etc/containerd/config.toml", "version = 4\nimports = ['/etc/containerd/conf.d/*.toml']\n")
	n.run(true, "install")
	if got := n.read("/etc/containerd/conf.d/inclavare-rune.toml"); !strings.Contains(got, "ConfigPath = '/srv/inclavare/rune.toml'") ||
		strings.Contains(got, "/etc/inclavare-containers/config.toml") {
		t.Errorf("drop-in:\n%s", got)
	}
}
