package deviceplugin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Config says where the kubelet and the host are and what to advertise.
type Config struct {
	// PluginDir is the kubelet's device-plugin directory: kubelet.sock is there and the
	// plugin's sockets go there. Default: /var/lib/kubelet/device-plugins.
	PluginDir string
	// HostRoot is where the node's / is seen (sysfs, /dev, the aesmd directory). Default: /.
	// The paths handed to the kubelet are node paths, without this prefix.
	HostRoot string
	// EPCMiB, when positive, is the EPC size to advertise instead of reading sysfs (kernels
	// older than 5.17). No NUMA topology is reported then.
	EPCMiB int64
	// MaxEPCMiB caps the EPC devices advertised. Default: DefaultMaxEPCMiB.
	MaxEPCMiB int64
	// SGXProvision also gives EPC containers the SGX provisioning device, which grants
	// access to the platform's provisioning key (needed to quote without aesmd).
	SGXProvision bool
	// EPCRuntimeArgs makes an EPC allocation also set the enclave.runtime.args annotation to
	// memory=<n>M (see the package documentation).
	EPCRuntimeArgs bool
	// TDXSlots, SNPSlots and SimSlots are how many containers may use each at once; 0
	// disables the resource.
	TDXSlots, SNPSlots, SimSlots int
	// PollInterval is how often the host and the kubelet socket are checked. Default: 5s.
	PollInterval time.Duration
	// Log receives what the plugin does. Default: logrus's standard logger.
	Log logrus.FieldLogger
}

// DefaultPollInterval is how often the plugin looks at the host and the kubelet by default.
const DefaultPollInterval = 5 * time.Second

// registerTimeout bounds one Register call: the kubelet answers at once or is not there.
const registerTimeout = 10 * time.Second

// Plugin serves every available TEE resource to the kubelet.
type Plugin struct {
	cfg  Config
	host hostFS
	log  logrus.FieldLogger

	mu        sync.Mutex
	resources map[string]*resource // the resources seen available at least once
	said      map[string]string    // the last message logged about each subject
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Plugin, error) {
	if cfg.PluginDir == "" {
		cfg.PluginDir = filepath.Clean(pb.DevicePluginPath)
	}
	if cfg.HostRoot == "" {
		cfg.HostRoot = "/"
	}
	if cfg.MaxEPCMiB == 0 {
		cfg.MaxEPCMiB = DefaultMaxEPCMiB
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	var errs []error
	for name, p := range map[string]string{"plugin directory": cfg.PluginDir, "host root": cfg.HostRoot} {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s %q must be an absolute path", name, p))
		}
	}
	for name, n := range map[string]int64{"EPC size": cfg.EPCMiB, "EPC device limit": cfg.MaxEPCMiB,
		"TDX slots": int64(cfg.TDXSlots), "SNP slots": int64(cfg.SNPSlots), "sim slots": int64(cfg.SimSlots)} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", name, n))
		}
	}
	if cfg.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll interval %s is negative", cfg.PollInterval))
	}
	// The kubelet joins the endpoint to its directory; a socket path longer than
	// sun_path cannot be bound.
	if l := len(filepath.Join(cfg.PluginDir, "inclavare-sgx-epc.sock")); l > 107 {
		errs = append(errs, fmt.Errorf("plugin directory %q is too long for a unix socket path (%d bytes)", cfg.PluginDir, l))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Plugin{
		cfg:       cfg,
		host:      hostFS{root: filepath.Clean(cfg.HostRoot)},
		log:       cfg.Log,
		resources: map[string]*resource{},
		said:      map[string]string{},
	}, nil
}

// KubeletSocket is where the kubelet's registration service listens.
func (p *Plugin) KubeletSocket() string { return filepath.Join(p.cfg.PluginDir, "kubelet.sock") }

// Run probes the host, serves and registers each available resource, and keeps doing so
// every poll interval until ctx ends; then it stops serving and removes its sockets.
func (p *Plugin) Run(ctx context.Context) error {
	if err := os.MkdirAll(p.cfg.PluginDir, 0o755); err != nil {
		return fmt.Errorf("device-plugin directory: %w", err)
	}
	defer p.stop()
	tick := time.NewTicker(p.cfg.PollInterval)
	defer tick.Stop()
	for {
		p.rescan()
		p.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// rescan probes every resource and publishes changes to ListAndWatch streams.
func (p *Plugin) rescan() {
	for _, name := range Resources {
		devs, err := p.probe(name)
		p.mu.Lock()
		r := p.resources[name]
		p.mu.Unlock()
		switch {
		case err == nil && r == nil:
			p.log.Infof("%s: %d devices", name, len(devs))
			r = newResource(p, name, devs)
			p.mu.Lock()
			p.resources[name] = r
			p.mu.Unlock()
		case err == nil:
			if r.setDevices(devs) {
				p.log.Infof("%s: %d devices, %d healthy", name, len(devs), countHealthy(devs))
			}
		case r != nil:
			// Once advertised, a resource stays registered: its devices turn Unhealthy so
			// that the kubelet stops placing pods here but keeps the running ones.
			if r.setHealth(pb.Unhealthy) {
				p.log.Warnf("%s: unhealthy: %v", name, err)
			}
		case !errors.Is(err, errUnavailable):
			p.sayOnce("probe "+name, logrus.ErrorLevel, fmt.Sprintf("%s: %v", name, err))
		}
	}
}

// reconcile makes sure each resource is served on a live socket and registered with the
// kubelet that listens now.
func (p *Plugin) reconcile(ctx context.Context) {
	kubelet, kubeletUp := socketIdentity(p.KubeletSocket())
	for _, name := range Resources {
		p.mu.Lock()
		r := p.resources[name]
		p.mu.Unlock()
		if r == nil {
			continue
		}
		if err := r.ensureServing(); err != nil {
			p.log.Errorf("%s: serve: %v", name, err)
			continue
		}
		if !kubeletUp || r.registeredWith() == kubelet {
			continue
		}
		if err := p.register(ctx, r); err != nil {
			if ctx.Err() != nil {
				return // shutting down
			}
			p.sayOnce("register "+name, logrus.ErrorLevel, fmt.Sprintf("%s: register with the kubelet (will retry): %v", name, err))
			continue
		}
		p.sayOnce("register "+name, logrus.DebugLevel, "")
		r.setRegistered(kubelet)
		p.log.Infof("%s: registered with the kubelet, endpoint %s", name, r.socketName)
	}
}

// sayOnce logs msg unless it is what was last logged about subject: the host is probed every
// poll interval, and a lasting problem is worth one line, not one per poll.
func (p *Plugin) sayOnce(subject string, level logrus.Level, msg string) {
	p.mu.Lock()
	same := p.said[subject] == msg
	p.said[subject] = msg
	p.mu.Unlock()
	if !same && msg != "" {
		p.log.WithField("subject", subject).Log(level, msg)
	}
}

func countHealthy(devs []*pb.Device) int {
	n := 0
	for _, d := range devs {
		if d.Health == pb.Healthy {
			n++
		}
	}
	return n
}

// register calls the kubelet's Register with this resource's endpoint and options.
func (p *Plugin) register(ctx context.Context, r *resource) error {
	conn, err := grpc.NewClient("unix://"+p.KubeletSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", p.KubeletSocket(), err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	_, err = pb.NewRegistrationClient(conn).Register(ctx, &pb.RegisterRequest{
		Version:      pb.Version,
		Endpoint:     r.socketName,
		ResourceName: r.name,
		Options:      pluginOptions(),
	})
	if err != nil {
		return fmt.Errorf("Register on %s: %w", p.KubeletSocket(), err)
	}
	return nil
}

func pluginOptions() *pb.DevicePluginOptions {
	return &pb.DevicePluginOptions{PreStartRequired: false, GetPreferredAllocationAvailable: true}
}

// stop ends every server and removes the sockets.
func (p *Plugin) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.resources {
		r.stopServing()
	}
}

// fileIdentity tells a socket file from the one that replaced it at the same path.
type fileIdentity struct {
	dev, ino     uint64
	ctimeSec     int64
	ctimeNsec    int64
	isUnixSocket bool
}

// socketIdentity returns the identity of the unix socket at path, and whether one is there.
func socketIdentity(path string) (fileIdentity, bool) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return fileIdentity{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdentity{}, false
	}
	return fileIdentity{dev: uint64(st.Dev), ino: st.Ino, ctimeSec: st.Ctim.Sec, ctimeNsec: st.Ctim.Nsec, isUnixSocket: true}, true
}

// RegisterFlags defines the command-line flags of rune-device-plugin on fs, with their
// defaults, writing into c. The deployment manifests are checked against these flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PluginDir, "plugin-dir", filepath.Clean(pb.DevicePluginPath), "the kubelet's device-plugin directory (kubelet.sock and the plugin's sockets)")
	fs.StringVar(&c.HostRoot, "host-root", "/", "where the node's / is seen (sysfs, /dev and "+tee.AESMSocketDir+" are looked at under it)")
	fs.Int64Var(&c.EPCMiB, "epc-mib", 0, "EPC size in MiB to advertise instead of reading "+SysfsNodeDir+"/node*/x86/sgx_total_bytes (kernels before 5.17)")
	fs.Int64Var(&c.MaxEPCMiB, "max-epc-mib", DefaultMaxEPCMiB, "advertise at most this many MiB of EPC")
	fs.BoolVar(&c.SGXProvision, "sgx-provision", true, "give EPC containers the SGX provisioning device too (access to the provisioning key, for quoting without aesmd)")
	fs.BoolVar(&c.EPCRuntimeArgs, "epc-runtime-args", true, "annotate EPC containers with "+AnnotationRuntimeArgs+"=memory=<n>M, the enclave memory limit rune passes to the enclave runtime")
	fs.IntVar(&c.TDXSlots, "tdx-slots", DefaultSlots, "containers that may use TDX at once (0 disables "+ResourceTDX+")")
	fs.IntVar(&c.SNPSlots, "snp-slots", DefaultSlots, "containers that may use SEV-SNP at once (0 disables "+ResourceSNP+")")
	fs.IntVar(&c.SimSlots, "sim-slots", DefaultSlots, "containers that may use the simulated TEE at once (0 disables "+ResourceSim+")")
	fs.DurationVar(&c.PollInterval, "poll-interval", DefaultPollInterval, "how often to look at the TEE devices and the kubelet socket")
}
