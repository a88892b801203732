package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

const (
	// NodeName is the cluster's one node. The API server reaches the kubelet (for exec, logs,
	// port-forward) at the node's hostname, which must resolve to the loopback address the
	// kubelet listens on; "localhost" does everywhere.
	NodeName = "localhost"
	// Namespace is the containerd namespace of the CRI.
	Namespace = "k8s.io"
	// HandlerRune and HandlerRunc are containerd's CRI runtime handlers.
	HandlerRune = "rune"
	HandlerRunc = "runc"
	// RuneLabel is the node label deploy/runtimeclass.yaml schedules rune pods by.
	RuneLabel = "inclavare.io/rune"
	// clientTimeout bounds every kubectl and ctr command.
	clientTimeout = 2 * time.Minute
)

// Generation selects the node's containerd.
type Generation int

const (
	// Containerd1 is Debian's containerd 1.6, configured with deploy/containerd/containerd-1.6-1.7.toml.
	Containerd1 Generation = 1
	// Containerd2 is containerd clients.Containerd2Version built from the module proxy, with
	// deploy/containerd/containerd-2.x.toml as a drop-in.
	Containerd2 Generation = 2
)

func (g Generation) String() string {
	if g == Containerd2 {
		return "containerd " + clients.Containerd2Version
	}
	return "containerd 1.6 (Debian)"
}

// Tools are the programs a cluster runs.
type Tools struct {
	Kubernetes  string // directory of KubernetesBinaries
	Etcd        string
	Containerd  string
	Ctr         string
	RuncShimDir string // containerd-shim-runc-v2 for containerd 2.x; empty: the one on PATH
	Runc        string
	Bin         string // the repository's bin/: rune, init-runelet, containerd-shim-rune-v2, rune-carrier-helper, shelter
	Go          string
}

// Cluster is a single-node Kubernetes cluster on loopback: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, a kubelet and a private containerd whose CRI has the
// handlers "runc" and "rune" (the latter from deploy/containerd/). Everything it creates lives
// below Dir, except what the kubelet insists on (hostState) and the cgroups below CgroupRoot,
// which Stop removes.
type Cluster struct {
	Tools
	Generation Generation
	Dir        string
	Kubeconfig string // cluster-admin
	// RuneRoot is the shim's rune.root: rune keeps its containers in RuneRoot/k8s.io/<id>.
	RuneRoot string
	RuncRoot string
	// ShimConfig is the configuration file the rune handler names (ConfigPath).
	ShimConfig string
	// SimPlatformKey is the node's sim TEE platform key (RUNE_SIM_PLATFORM_KEY of containerd,
	// and so of the shim and rune).
	SimPlatformKey string
	// ContainerdConfig is containerd's main configuration file.
	ContainerdConfig string
	Sock             string // containerd's gRPC socket
	// ContainerdConfD is the conf.d directory containerd 2.x imports *.toml from.
	ContainerdConfD string
	// ShimDir is the directory first on containerd's PATH, where it finds
	// containerd-shim-rune-v2: Bin, unless the installer put the shim elsewhere.
	ShimDir string
	// RestartContainerd is a program that makes the harness restart containerd, the way
	// `systemctl restart containerd` does on a systemd node (for the installer).
	RestartContainerd string

	pki        *pki
	host       *hostState
	etcd       *process
	apiserver  *process
	controller *process
	scheduler  *process
	kubelet    *process
	containerd *process

	apiPort, kubeletPort int
	// Recovered names what a killed run of the harness had left on the node and Start put
	// back (nodelock.go), for the test's log.
	Recovered []string
	lock      *nodeLock
	// supervise restarts containerd when it exits unasked, as systemd would; stopping is set
	// while the harness itself stops it.
	supMu    sync.Mutex
	stopping bool
	supDone  chan struct{}
}

// Start brings a cluster up on tools with the node's containerd of generation gen and waits
// until the node is Ready. After an error, Stop still tears down whatever was started.
func Start(tools Tools, gen Generation) (*Cluster, error) {
	lock, recovered, err := lockNode()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rune-k8s-")
	if err != nil {
		lock.release(false)
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	c := &Cluster{
		Recovered:         recovered,
		lock:              lock,
		Tools:             tools,
		Generation:        gen,
		Dir:               dir,
		Kubeconfig:        filepath.Join(dir, "admin.kubeconfig"),
		RuneRoot:          filepath.Join(dir, "rune"),
		RuncRoot:          filepath.Join(dir, "runc"),
		ShimConfig:        filepath.Join(dir, "shim.toml"),
		SimPlatformKey:    filepath.Join(dir, "sim", "platform-key.pem"),
		ContainerdConfig:  filepath.Join(dir, "containerd", "config.toml"),
		Sock:              filepath.Join(dir, "containerd", "containerd.sock"),
		RestartContainerd: filepath.Join(dir, "restart-containerd"),
		ContainerdConfD:   filepath.Join(dir, "containerd", "conf.d"),
		ShimDir:           tools.Bin,
	}
	if c.host, err = saveHostState(); err != nil {
		return c, err
	}
	if err := lock.record(c.host); err != nil {
		return c, err
	}
	if err := createCgroupRoot(); err != nil {
		return c, err
	}
	if err := c.start(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) start() error {
	for _, d := range []string{"etcd", "containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs", "sim", "carriers", "signing"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer := ports[0], ports[1]
	c.apiPort, c.kubeletPort = ports[2], ports[3]
	if err := c.writePKI(); err != nil {
		return err
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	c.etcd = newProcess(c.Dir, "etcd", nil, c.Etcd,
		"--name=node", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=node="+peerURL,
		// A test cluster's data dies with it: no fsync, a small backend.
		"--unsafe-no-fsync", "--quota-backend-bytes=1073741824", "--log-level=warn")
	if err := c.etcd.start(); err != nil {
		return err
	}

	p := c.pki
	c.apiserver = newProcess(c.Dir, "kube-apiserver", nil, c.k8s("kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.apiPort),
		"--tls-cert-file="+p.path("apiserver", "crt"), "--tls-private-key-file="+p.path("apiserver", "key"),
		"--client-ca-file="+p.path("ca", "crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.path("sa", "pub"), "--service-account-signing-key-file="+p.path("sa", "key"),
		"--service-cluster-ip-range="+serviceSubnet,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true", "--anonymous-auth=false", "--profiling=false",
		// The kubernetes Service would point at 127.0.0.1: no pod could use it anyway.
		"--endpoint-reconciler-type=none",
		"--kubelet-client-certificate="+p.path("apiserver-kubelet-client", "crt"),
		"--kubelet-client-key="+p.path("apiserver-kubelet-client", "key"),
		"--kubelet-certificate-authority="+p.path("ca", "crt"),
		"--kubelet-preferred-address-types=Hostname")
	if err := c.apiserver.start(); err != nil {
		return err
	}
	if err := c.waitFor(c.apiserver, 90*time.Second, "the API server to be ready", func() error {
		_, err := c.kubectlOK("get", "--raw", "/readyz")
		return err
	}); err != nil {
		return err
	}
	c.controller = newProcess(c.Dir, "kube-controller-manager", nil, c.k8s("kube-controller-manager"),
		"--kubeconfig="+c.kubeconfigPath("controller-manager"),
		"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true",
		"--service-account-private-key-file="+p.path("sa", "key"), "--root-ca-file="+p.path("ca", "crt"),
		// A single node of host-network pods: no routes, no cloud, no CIDR allocation.
		"--controllers=*,-nodeipam,-route,-cloud-node-lifecycle,-service-lb-controller")
	c.scheduler = newProcess(c.Dir, "kube-scheduler", nil, c.k8s("kube-scheduler"),
		"--kubeconfig="+c.kubeconfigPath("scheduler"), "--leader-elect=false", "--secure-port=0")
	for _, proc := range []*process{c.controller, c.scheduler} {
		if err := proc.start(); err != nil {
			return err
		}
	}

	if err := c.writeNodeConfig(); err != nil {
		return err
	}
	if err := c.startContainerd(); err != nil {
		return err
	}
	c.supDone = make(chan struct{})
	go c.superviseContainerd()
	c.kubelet = newProcess(c.Dir, "kubelet", nil, c.k8s("kubelet"),
		"--config="+filepath.Join(c.Dir, "kubelet", "config.yaml"),
		"--kubeconfig="+c.kubeconfigPath("kubelet"),
		"--root-dir="+filepath.Join(c.Dir, "kubelet", "root"),
		"--hostname-override="+NodeName,
		"--v=2")
	if err := c.kubelet.start(); err != nil {
		return err
	}
	if err := c.WaitNodeReady(3 * time.Minute); err != nil {
		return err
	}
	// deploy/README.md, step 3: the admin opts the node in.
	if _, err := c.kubectlOK("label", "node", NodeName, RuneLabel+"=true"); err != nil {
		return err
	}
	// The controller manager creates the default service account, which every pod needs.
	return c.waitFor(c.controller, 90*time.Second, "the default service account", func() error {
		_, err := c.kubectlOK("-n", "default", "get", "serviceaccount", "default")
		return err
	})
}

func (c *Cluster) k8s(name string) string { return filepath.Join(c.Kubernetes, name) }

// writePKI creates the CA, the serving and client certificates, the service-account keys and a
// kubeconfig per client.
func (c *Cluster) writePKI() error {
	p, err := newPKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return err
	}
	c.pki = p
	issues := []struct {
		name, cn string
		orgs     []string
		server   bool
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, true, []string{"127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "198.18.1.1"}},
		{"kubelet-server", "system:node:" + NodeName, nil, true, []string{"127.0.0.1", NodeName}},
		{"admin", "inclavare-tests-admin", []string{"system:masters"}, false, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false, nil},
		{"controller-manager", "system:kube-controller-manager", nil, false, nil},
		{"scheduler", "system:kube-scheduler", nil, false, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, false, nil},
	}
	for _, i := range issues {
		if err := p.issue(i.name, i.cn, i.orgs, i.server, i.hosts...); err != nil {
			return err
		}
	}
	if err := p.serviceAccountKeys(); err != nil {
		return err
	}
	for _, name := range []string{"admin", "controller-manager", "scheduler", "kubelet"} {
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: local
  context: {cluster: local, user: %[3]s}
current-context: local
`, c.apiPort, p.path("ca", "crt"), name, p.path(name, "crt"), p.path(name, "key"))
		if err := os.WriteFile(c.kubeconfigPath(name), []byte(kc), 0o600); err != nil {
			return fmt.Errorf("write %s kubeconfig: %w", name, err)
		}
	}
	return nil
}

func (c *Cluster) kubeconfigPath(name string) string {
	return filepath.Join(c.Dir, name+".kubeconfig")
}

// writeNodeConfig writes the kubelet's, containerd's, the shim's and CNI's configuration.
func (c *Cluster) writeNodeConfig() error {
	p := c.pki
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization:
  mode: AlwaysAllow
# This machine has cgroup v1 (hybrid), which 1.35 refuses unless told.
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%[6]s
podLogsDir: %s
# A test node on a shared disk and memory: never evict, never collect images.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
resolvConf: ""
`, c.kubeletPort, p.path("kubelet-server", "crt"), p.path("kubelet-server", "key"), p.path("ca", "crt"),
		CgroupRoot, c.Sock, filepath.Join(c.Dir, "pod-logs"))
	if err := os.WriteFile(filepath.Join(c.Dir, "kubelet", "config.yaml"), []byte(kubelet), 0o644); err != nil {
		return fmt.Errorf("write kubelet config: %w", err)
	}

	// A bridge network the node needs to be Ready; test pods use the host's network. The
	// IPAM state stays in the cluster's directory.
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "inclavare-k8s-tests",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}},
    {"type": "loopback"}
  ]
}
`, bridgeName, filepath.Join(c.Dir, "cni", "ipam"), podSubnet)
	if err := os.WriteFile(filepath.Join(c.Dir, "cni", "net.d", "10-inclavare-tests.conflist"), []byte(cni), 0o644); err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}

	if err := c.writeSigningKey(); err != nil {
		return err
	}
	shim := fmt.Sprintf(`log_level = "debug"

[rune]
path = %q
root = %q
systemd_cgroup = false
manifest_trust = %q

[signing]
key_file = %q

[carriers]
enabled = ["wasm", "native"]
cache_dir = %q
`, filepath.Join(c.Bin, "rune"), c.RuneRoot, filepath.Join(c.Dir, "signing", "trust.pem"),
		filepath.Join(c.Dir, "signing", "key.pem"), filepath.Join(c.Dir, "carriers"))
	if err := os.WriteFile(c.ShimConfig, []byte(shim), 0o644); err != nil {
		return fmt.Errorf("write shim config: %w", err)
	}
	if err := c.writeContainerdConfig(true); err != nil {
		return err
	}
	restart := fmt.Sprintf("#!/bin/sh\n# Written by tests/k8s: restarts the test node's containerd, as systemctl restart would.\nexec kill -TERM \"$(cat %q)\"\n",
		filepath.Join(c.Dir, "containerd", "containerd.pid"))
	if err := os.WriteFile(c.RestartContainerd, []byte(restart), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", c.RestartContainerd, err)
	}
	return nil
}

// writeContainerdConfig writes containerd's configuration: CRI with the runc handler and, with
// withRune, the rune handler as shipped in deploy/containerd/ (only its ConfigPath names this
// cluster's shim configuration instead of /etc/inclavare-containers/config.toml).
func (c *Cluster) writeContainerdConfig(withRune bool) error {
	base := c.containerdBaseConfig()
	dropIn := filepath.Join(c.ContainerdConfD, "inclavare-rune.toml")
	switch c.Generation {
	case Containerd1:
		if withRune {
			block, err := c.shippedHandler("containerd-1.6-1.7.toml")
			if err != nil {
				return err
			}
			base += "\n# deploy/containerd/containerd-1.6-1.7.toml\n" + versionLine.ReplaceAllString(block, "")
		}
		if err := os.WriteFile(c.ContainerdConfig, []byte(base), 0o644); err != nil {
			return fmt.Errorf("write containerd config: %w", err)
		}
	case Containerd2:
		// NRI would listen on the host's /var/run/nri/nri.sock, which other containerds
		// use: this node has no NRI plugins.
		base += "\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n"
		// containerd 2.x migrates the version 2 schema itself; `config migrate` gives the
		// file a 2.x node has (version 3, or 4 from 2.4 on), which imports the drop-in.
		v2 := filepath.Join(c.Dir, "containerd", "config-v2.toml")
		if err := os.WriteFile(v2, []byte(base), 0o644); err != nil {
			return fmt.Errorf("write containerd config: %w", err)
		}
		res, err := clients.Run(context.Background(), clientTimeout, nil, c.Containerd, "--config", v2, "config", "migrate")
		if err == nil && res.ExitCode != 0 {
			err = errors.New(res.String())
		}
		if err != nil {
			return fmt.Errorf("containerd config migrate: %w", err)
		}
		v3 := res.Stdout
		if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
			return fmt.Errorf("create conf.d: %w", err)
		}
		if withRune {
			block, err := c.shippedHandler("containerd-2.x.toml")
			if err != nil {
				return err
			}
			if err := os.WriteFile(dropIn, []byte(block), 0o644); err != nil {
				return fmt.Errorf("write drop-in: %w", err)
			}
		} else if err := os.Remove(dropIn); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove drop-in: %w", err)
		}
		// The migrated file imports /etc/containerd/conf.d/*.toml (2.4's default): the
		// node imports its own conf.d instead.
		imports := fmt.Sprintf("imports = [%q]", filepath.Join(filepath.Dir(dropIn), "*.toml"))
		if importsLine.MatchString(v3) {
			v3 = importsLine.ReplaceAllLiteralString(v3, imports)
		} else {
			v3 = versionLine.ReplaceAllLiteralString(v3, "version = 3\n"+imports+"\n")
		}
		if err := os.WriteFile(c.ContainerdConfig, []byte(v3), 0o644); err != nil {
			return fmt.Errorf("write containerd config: %w", err)
		}
	}
	return nil
}

var (
	versionLine = regexp.MustCompile(`(?m)^version = \d+\n`)
	importsLine = regexp.MustCompile(`(?m)^imports = \[.*\]$`)
)

// shippedHandler reads deploy/containerd/name with its ConfigPath pointed at the cluster's
// shim configuration.
func (c *Cluster) shippedHandler(name string) (string, error) {
	root, err := clients.RepoRoot()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "containerd", name))
	if err != nil {
		return "", fmt.Errorf("read the shipped handler: %w", err)
	}
	const shipped = "/etc/inclavare-containers/config.toml"
	if !strings.Contains(string(data), shipped) {
		return "", fmt.Errorf("deploy/containerd/%s no longer names %s: update the harness", name, shipped)
	}
	return strings.ReplaceAll(string(data), shipped, c.ShimConfig), nil
}

// containerdBaseConfig is containerd's configuration (version 2 schema) without the rune
// handler: private directories, CRI with a locally built pause image, CNI in the cluster's
// directory and the runc handler with its own root.
func (c *Cluster) containerdBaseConfig() string {
	cd := filepath.Join(c.Dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[debug]
  address = "%[3]s.debug"

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # CAP_SYS_RESOURCE is not in this VM's bounding set: oom_score_adj cannot go below 0.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[7]q
        Root = %[8]q
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), c.Sock, filepath.Join(cd, "opt"),
		PauseImage, filepath.Join(c.Dir, "cni", "net.d"), c.Runc, c.RuncRoot)
}

// startContainerd starts containerd with the repository's bin/ first on its PATH (where it
// finds containerd-shim-rune-v2) and the node's sim platform key, and waits until its CRI
// answers.
func (c *Cluster) startContainerd() error {
	path := c.ShimDir + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"
	if c.RuncShimDir != "" {
		path = c.ShimDir + ":" + c.RuncShimDir + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"
	}
	if c.containerd == nil {
		c.containerd = newProcess(c.Dir, "containerd", nil, c.Containerd, "--config", c.ContainerdConfig)
	}
	c.containerd.env = []string{
		"PATH=" + path,
		"RUNE_SIM_PLATFORM_KEY=" + c.SimPlatformKey,
		"RUNE_CACHE_DIR=" + filepath.Join(c.Dir, "rune-cache"),
	}
	if err := c.containerd.start(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "containerd", "containerd.pid"), []byte(fmt.Sprint(c.containerd.pid())), 0o644); err != nil {
		return fmt.Errorf("write containerd's pid file: %w", err)
	}
	return c.waitFor(c.containerd, 60*time.Second, "containerd's CRI", func() error {
		// `ctr plugins ls` lists the CRI plugin as ok once it loaded.
		res, err := c.Ctr("plugins", "ls")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(res, "\n") {
			if f := strings.Fields(l); len(f) >= 4 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
				if f[len(f)-1] == "ok" {
					return nil
				}
				return fmt.Errorf("CRI plugin: %s", l)
			}
		}
		return errors.New("no CRI plugin listed")
	})
}

// superviseContainerd restarts containerd whenever it exits without the harness stopping it:
// the installer restarts the node's containerd by making it exit (RestartContainerd).
func (c *Cluster) superviseContainerd() {
	defer close(c.supDone)
	for {
		<-c.containerd.done()
		c.supMu.Lock()
		stopping := c.stopping
		c.supMu.Unlock()
		if stopping {
			return
		}
		if err := c.startContainerd(); err != nil {
			fmt.Fprintf(os.Stderr, "tests/k8s: restarting containerd: %v\n", err)
			return
		}
	}
}

// setSupervised turns the restart of an exiting containerd on or off (off while the harness
// stops or kills it itself).
func (c *Cluster) setSupervised(on bool) {
	c.supMu.Lock()
	c.stopping = !on
	c.supMu.Unlock()
}

// Ctr runs ctr against the node's containerd in the CRI namespace and returns its stdout.
func (c *Cluster) Ctr(args ...string) (string, error) {
	res, err := clients.Run(context.Background(), clientTimeout, nil, c.Tools.Ctr, append([]string{"-a", c.Sock, "-n", Namespace}, args...)...)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("ctr %s: %s", strings.Join(args, " "), res)
	}
	return res.Stdout, err
}

// waitFor polls probe until it succeeds, proc exits, or timeout passes.
func (c *Cluster) waitFor(proc *process, timeout time.Duration, what string, probe func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probe()
		if err == nil {
			return nil
		}
		if !proc.running() {
			return fmt.Errorf("waiting for %s: %s exited; its log:\n%s", what, proc.name, proc.logTail(40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: gave up after %v: %v; %s log:\n%s", what, timeout, err, proc.name, proc.logTail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// RestartKubelet stops the kubelet (SIGKILL with kill, else SIGTERM) and starts it again.
func (c *Cluster) RestartKubelet(kill bool) error {
	var err error
	if kill {
		err = c.kubelet.kill()
	} else {
		err = c.kubelet.stop(30 * time.Second)
	}
	if err != nil {
		return err
	}
	return c.kubelet.start()
}

// KillKubelet SIGKILLs the kubelet; StartKubelet starts it again.
func (c *Cluster) KillKubelet() error  { return c.kubelet.kill() }
func (c *Cluster) StartKubelet() error { return c.kubelet.start() }

// KillContainerd SIGKILLs containerd (its shims and their containers keep running), which
// stays down until StartContainerd.
func (c *Cluster) KillContainerd() error {
	c.setSupervised(false)
	if err := c.containerd.kill(); err != nil {
		return err
	}
	<-c.supDone
	return nil
}

// StopContainerd stops containerd (SIGTERM), which stays down until StartContainerd.
func (c *Cluster) StopContainerd() error {
	c.setSupervised(false)
	if err := c.containerd.stop(30 * time.Second); err != nil {
		return err
	}
	<-c.supDone
	return nil
}

// StartContainerd starts containerd again, supervised.
func (c *Cluster) StartContainerd() error {
	c.setSupervised(true)
	if err := c.startContainerd(); err != nil {
		return err
	}
	c.supDone = make(chan struct{})
	go c.superviseContainerd()
	return nil
}

// LogTails is the end of every component's log, for failure reports.
func (c *Cluster) LogTails(n int) string {
	if c == nil { // Start failed before it had a cluster
		return ""
	}
	var b strings.Builder
	for _, p := range []*process{c.kubelet, c.containerd, c.apiserver, c.controller, c.scheduler, c.etcd} {
		if p != nil {
			fmt.Fprintf(&b, "---- %s (last %d lines)\n%s\n", p.name, n, p.logTail(n))
		}
	}
	return b.String()
}

// Stop deletes every pod, stops the components (the kubelet first, the API server before
// etcd), removes what is left of containers (rune's and runc's roots, processes, mounts),
// restores the node (hostState) and removes Dir. Every problem is reported.
func (c *Cluster) Stop() error {
	if c == nil { // Start failed before it had a cluster
		return nil
	}
	var errs []error
	if c.apiserver != nil && c.apiserver.running() && c.kubelet != nil && c.kubelet.running() {
		// Namespaces other than the system ones go first (their controllers stop first), then
		// every pod, quickly.
		if _, err := c.kubectlOK("delete", "daemonsets,deployments,pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=true", "--timeout=90s"); err != nil {
			errs = append(errs, err)
		}
	}
	if c.kubelet != nil {
		if err := c.kubelet.stop(30 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// The kubelet removes the containers of deleted pods only at its next garbage collection:
	// remove them (and any a killed kubelet left) through containerd.
	if c.containerd != nil && c.containerd.running() {
		if err := c.removeCRIPods(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range []*process{c.scheduler, c.controller, c.apiserver, c.etcd} {
		if p != nil {
			if err := p.stop(30 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if c.containerd != nil {
		c.setSupervised(false)
		if err := c.containerd.stop(30 * time.Second); err != nil {
			errs = append(errs, err)
		}
		if c.supDone != nil {
			<-c.supDone
		}
	}
	ctx := context.Background()
	if c.Bin != "" {
		if err := clients.ForceDeleteAll(ctx, filepath.Join(c.Bin, "rune"), filepath.Join(c.RuneRoot, Namespace)); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Runc != "" {
		if err := clients.ForceDeleteAll(ctx, c.Runc, filepath.Join(c.RuncRoot, Namespace)); err != nil {
			errs = append(errs, err)
		}
	}
	// A shim whose task containerd deleted exits on its own a moment later (containerd 2.x's
	// runc shim was once seen still exiting as the check ran): give the cluster's processes
	// up to 15 s to go before calling them survivors.
	for deadline := time.Now().Add(15 * time.Second); len(processCmdlines(c.Dir+"/")) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	survivors := processCmdlines(c.Dir + "/")
	if pids, err := clients.KillProcessesUnder(c.Dir); err != nil {
		errs = append(errs, err)
	} else if len(pids) > 0 {
		var named []string
		for _, pid := range pids {
			named = append(named, fmt.Sprintf("%d %q", pid, survivors[pid]))
		}
		errs = append(errs, fmt.Errorf("processes of the cluster outlived its teardown (killed): %s", strings.Join(named, "; ")))
	}
	if err := clients.UnmountUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	if c.host != nil {
		if err := c.host.restore(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
	}
	// A teardown that failed keeps its record: the next cluster puts the node back first.
	if c.lock != nil {
		if err := c.lock.release(len(errs) > 0); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", lockPath, err))
		}
		c.lock = nil
	}
	return errors.Join(errs...)
}

// removeCRIPods kills and removes every container of the CRI namespace (sandboxes included).
func (c *Cluster) removeCRIPods() error {
	out, err := c.Ctr("containers", "ls", "-q")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(out) {
		if _, err := c.Ctr("tasks", "kill", "-s", "SIGKILL", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := c.Ctr("tasks", "delete", "-f", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
		if _, err := c.Ctr("containers", "delete", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers names what the cluster left on the node after Stop: it must be nothing.
func (c *Cluster) Leftovers() []string {
	if c == nil { // Start failed before it had a cluster
		return nil
	}
	var left []string
	if c.host != nil {
		left = append(left, c.host.leftovers()...)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		left = append(left, c.Dir)
	}
	for _, mp := range mountsBelow(c.Dir) {
		left = append(left, "mount "+mp)
	}
	if out, err := exec.Command("pgrep", "-f", c.Dir+"/").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		left = append(left, "processes "+strings.Join(strings.Fields(string(out)), " "))
	}
	return left
}

// processCmdlines maps each process whose command line holds substr to that command line.
func processCmdlines(substr string) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), substr) {
			out[pid] = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}
