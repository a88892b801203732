package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// testPoll makes the plugin look at the host and the kubelet often, so that tests see its
// reactions quickly; tests wait for events, never for a duration.
const testPoll = 5 * time.Millisecond

// waitLimit only bounds a test that would otherwise hang on a broken plugin.
const waitLimit = 30 * time.Second

// fakeKubelet is the kubelet's side of device-plugin registration: the real v1beta1
// Registration service on kubelet.sock, recording each request.
type fakeKubelet struct {
	pb.UnimplementedRegistrationServer
	socket   string
	server   *grpc.Server
	requests chan *pb.RegisterRequest
}

func startKubelet(t *testing.T, dir string) *fakeKubelet {
	t.Helper()
	k := &fakeKubelet{socket: filepath.Join(dir, "kubelet.sock"), requests: make(chan *pb.RegisterRequest, 64)}
	l, err := net.Listen("unix", k.socket)
	if err != nil {
		t.Fatalf("fake kubelet: %v", err)
	}
	k.server = grpc.NewServer()
	pb.RegisterRegistrationServer(k.server, k)
	go k.server.Serve(l)
	t.Cleanup(k.stop)
	return k
}

func (k *fakeKubelet) Register(_ context.Context, r *pb.RegisterRequest) (*pb.Empty, error) {
	if r.Version != pb.Version {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported version %q", r.Version)
	}
	k.requests <- r
	return &pb.Empty{}, nil
}

// stop is what a dying kubelet leaves behind: no server; Stop also removes the socket file.
func (k *fakeKubelet) stop() { k.server.Stop() }

// next returns the next registration.
func (k *fakeKubelet) next(t *testing.T) *pb.RegisterRequest {
	t.Helper()
	select {
	case r := <-k.requests:
		return r
	case <-time.After(waitLimit):
		t.Fatal("no registration from the plugin")
		return nil
	}
}

// hostTree builds a node's file tree: files maps node paths to content; symlinks maps node
// paths to link targets.
func hostTree(t *testing.T, files map[string]string, symlinks map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range symlinks {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// socketDir is a short directory for unix sockets (sun_path holds 108 bytes; t.TempDir
// includes the test's name).
func socketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type runningPlugin struct {
	*Plugin
	cancel context.CancelFunc
	done   chan error
}

func startPlugin(t *testing.T, cfg Config) *runningPlugin {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = testPoll
	}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	cfg.Log = log
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningPlugin{Plugin: p, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- p.Run(ctx) }()
	t.Cleanup(func() { rp.shutdown(t) })
	return rp
}

func (rp *runningPlugin) shutdown(t *testing.T) {
	rp.cancel()
	select {
	case err := <-rp.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		rp.done <- nil // later calls return at once
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after its context ended")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// dial connects to a plugin endpoint as the kubelet does after a registration.
func dial(t *testing.T, dir, endpoint string) pb.DevicePluginClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, endpoint), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewDevicePluginClient(conn)
}

// watch opens ListAndWatch and returns its first list and the stream.
func watch(t *testing.T, c pb.DevicePluginClient) ([]*pb.Device, pb.DevicePlugin_ListAndWatchClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.ListAndWatch(ctx, &pb.Empty{})
	if err != nil {
		t.Fatalf("ListAndWatch: %v", err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatalf("ListAndWatch: %v", err)
	}
	return r.Devices, s
}

// recvUntil reads lists from s until ok accepts one.
func recvUntil(t *testing.T, s pb.DevicePlugin_ListAndWatchClient, what string, ok func([]*pb.Device) bool) []*pb.Device {
	t.Helper()
	type result struct {
		devs []*pb.Device
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				ch <- result{err: err}
				return
			}
			if ok(r.Devices) {
				ch <- result{devs: r.Devices}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("waiting for %s: %v", what, r.err)
		}
		return r.devs
	case <-time.After(waitLimit):
		t.Fatalf("ListAndWatch never sent %s", what)
		return nil
	}
}

func allHealth(health string) func([]*pb.Device) bool {
	return func(devs []*pb.Device) bool {
		for _, d := range devs {
			if d.Health != health {
				return false
			}
		}
		return len(devs) > 0
	}
}

const mib = 1 << 20

// sgxHost is a node with SGX: 64 MiB of EPC on NUMA node 0, 32 MiB on node 1, the upstream
// driver's devices and their udev links, and aesmd's socket directory behind /var/run → /run.
func sgxHost(t *testing.T, extra ...string) string {
	files := map[string]string{
		"/sys/devices/system/node/node0/x86/sgx_total_bytes": fmt.Sprintf("%d\n", 64*mib),
		"/sys/devices/system/node/node1/x86/sgx_total_bytes": fmt.Sprintf("%d\n", 32*mib),
		"/sys/devices/system/node/possible":                  "0-1\n",
		"/dev/sgx_enclave":                                   "",
		"/dev/sgx_provision":                                 "",
		"/run/aesmd/aesm.socket":                             "",
	}
	for _, p := range extra {
		files[p] = ""
	}
	return hostTree(t, files, map[string]string{
		"/dev/sgx/enclave":   "../sgx_enclave",
		"/dev/sgx/provision": "/dev/sgx_provision",
		"/var/run":           "/run",
	})
}

func TestRegistration(t *testing.T) {
	dir := socketDir(t)
	k := startKubelet(t, dir)
	startPlugin(t, Config{PluginDir: dir, HostRoot: sgxHost(t), TDXSlots: 4, SNPSlots: 4, SimSlots: 3})

	// Resources register in the order of Resources in each round; TDX and SNP have no
	// device on this host, so they would have come between EPC and sim.
	var got []string
	for _, want := range []string{ResourceEPC, ResourceSim} {
		r := k.next(t)
		got = append(got, r.ResourceName)
		if r.ResourceName != want {
			t.Fatalf("registrations %v, want %s next", got, want)
		}
		if r.Version != "v1beta1" {
			t.Errorf("%s: version %q", r.ResourceName, r.Version)
		}
		if r.Endpoint != socketNames[want] || filepath.Base(r.Endpoint) != r.Endpoint {
			t.Errorf("%s: endpoint %q, want the socket's file name %q", want, r.Endpoint, socketNames[want])
		}
		if r.Options == nil || r.Options.PreStartRequired || !r.Options.GetPreferredAllocationAvailable {
			t.Errorf("%s: options %v, want preferred allocation and no pre-start", want, r.Options)
		}
		// The kubelet joins the endpoint to its own directory and dials it.
		c := dial(t, dir, r.Endpoint)
		opts, err := c.GetDevicePluginOptions(context.Background(), &pb.Empty{})
		if err != nil {
			t.Fatalf("%s: GetDevicePluginOptions: %v", want, err)
		}
		if !proto.Equal(opts, r.Options) {
			t.Errorf("%s: GetDevicePluginOptions %v, registered %v", want, opts, r.Options)
		}
		if _, err := c.PreStartContainer(context.Background(), &pb.PreStartContainerRequest{}); err != nil {
			t.Errorf("%s: PreStartContainer: %v", want, err)
		}
	}
	for _, absent := range []string{ResourceTDX, ResourceSNP} {
		if _, err := os.Stat(filepath.Join(dir, socketNames[absent])); err == nil {
			t.Errorf("%s is served on a host without its device", absent)
		}
	}
}

func TestListAndWatchCapacity(t *testing.T) {
	node := func(n int, bytes uint64) (string, string) {
		return fmt.Sprintf("/sys/devices/system/node/node%d/x86/sgx_total_bytes", n), fmt.Sprintf("%d\n", bytes)
	}
	tests := []struct {
		name    string
		files   [][2]string
		cfg     Config
		perNode map[int64]int // NUMA node (-1: none) → devices
	}{
		{name: "two nodes", files: [][2]string{pair(node(0, 64*mib)), pair(node(1, 32*mib))}, perNode: map[int64]int{0: 64, 1: 32}},
		{name: "partial MiB rounds down", files: [][2]string{pair(node(0, 8*mib+512<<10))}, perNode: map[int64]int{0: 8}},
		{name: "node without EPC", files: [][2]string{pair(node(0, 16*mib)), {"/sys/devices/system/node/node1/cpumap", "0"}}, perNode: map[int64]int{0: 16}},
		{name: "limit", files: [][2]string{pair(node(0, 64*mib)), pair(node(1, 32*mib))}, cfg: Config{MaxEPCMiB: 80}, perNode: map[int64]int{0: 64, 1: 16}},
		{name: "explicit size, old kernel", cfg: Config{EPCMiB: 12}, perNode: map[int64]int{-1: 12}},
		{name: "explicit size wins", files: [][2]string{pair(node(0, 64*mib))}, cfg: Config{EPCMiB: 5}, perNode: map[int64]int{-1: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"/dev/sgx_enclave": ""}
			for _, f := range tc.files {
				files[f[0]] = f[1]
			}
			dir := socketDir(t)
			k := startKubelet(t, dir)
			cfg := tc.cfg
			cfg.PluginDir, cfg.HostRoot = dir, hostTree(t, files, nil)
			startPlugin(t, cfg)
			r := k.next(t)
			if r.ResourceName != ResourceEPC {
				t.Fatalf("registered %s first, want %s", r.ResourceName, ResourceEPC)
			}
			devs, _ := watch(t, dial(t, dir, r.Endpoint))
			got := map[int64]int{}
			ids := map[string]bool{}
			for _, d := range devs {
				got[numaNode(d)]++
				if d.Health != pb.Healthy {
					t.Errorf("device %s is %s", d.ID, d.Health)
				}
				if ids[d.ID] || len(d.ID) > 63 {
					t.Errorf("device ID %q repeated or longer than 63 characters", d.ID)
				}
				ids[d.ID] = true
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.perNode) {
				t.Errorf("devices per NUMA node %v, want %v", got, tc.perNode)
			}
		})
	}
}

func pair(a, b string) [2]string { return [2]string{a, b} }

// TestEPCUnreadable: an SGX device whose EPC size cannot be read is not advertised with a
// made-up size, and a sysfs attribute that does not parse is not either.
func TestEPCUnreadable(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no attribute (kernel < 5.17)": {"/dev/sgx_enclave": "", "/sys/devices/system/node/node0/cpumap": "1"},
		"garbage":                      {"/dev/sgx_enclave": "", "/sys/devices/system/node/node0/x86/sgx_total_bytes": "lots\n"},
		"less than a MiB":              {"/dev/sgx_enclave": "", "/sys/devices/system/node/node0/x86/sgx_total_bytes": "4096\n"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := New(Config{PluginDir: "/nonexistent", HostRoot: hostTree(t, files, nil), Log: discardLog()})
			if err != nil {
				t.Fatal(err)
			}
			devs, err := p.probe(ResourceEPC)
			if err == nil {
				t.Fatalf("probe advertised %d EPC devices", len(devs))
			}
			t.Log(err)
		})
	}
}

func discardLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(nopWriter{})
	return l
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestAllocate(t *testing.T) {
	dir := socketDir(t)
	k := startKubelet(t, dir)
	root := sgxHost(t, "/dev/tdx_guest", "/sys/kernel/config/tsm/report/")
	startPlugin(t, Config{PluginDir: dir, HostRoot: root, TDXSlots: 2, SimSlots: 2, SGXProvision: true, EPCRuntimeArgs: true})
	clients := map[string]pb.DevicePluginClient{}
	ids := map[string][]string{}
	for range 3 {
		r := k.next(t)
		clients[r.ResourceName] = dial(t, dir, r.Endpoint)
		devs, _ := watch(t, clients[r.ResourceName])
		for _, d := range devs {
			ids[r.ResourceName] = append(ids[r.ResourceName], d.ID)
		}
	}

	epc := ids[ResourceEPC]
	resp, err := clients[ResourceEPC].Allocate(context.Background(), &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{
		{DevicesIds: epc[:4]}, {DevicesIds: epc[4:5]},
	}})
	if err != nil {
		t.Fatalf("Allocate EPC: %v", err)
	}
	if len(resp.ContainerResponses) != 2 {
		t.Fatalf("%d container responses for 2 containers", len(resp.ContainerResponses))
	}
	c := resp.ContainerResponses[0]
	wantDevices := []string{
		"/dev/sgx/enclave <- /dev/sgx_enclave rw",
		"/dev/sgx/provision <- /dev/sgx_provision rw",
		"/dev/sgx_enclave <- /dev/sgx_enclave rw",
		"/dev/sgx_provision <- /dev/sgx_provision rw",
	}
	if got := deviceSpecs(c.Devices); fmt.Sprint(got) != fmt.Sprint(wantDevices) {
		t.Errorf("EPC devices\n%v\nwant\n%v", got, wantDevices)
	}
	// /var/run is a link to /run on the node; the kubelet gets the node path as asked for,
	// resolved on the node, never in the plugin's container.
	if len(c.Mounts) != 1 || c.Mounts[0].ContainerPath != tee.AESMSocketDir || c.Mounts[0].HostPath != "/run/aesmd" || !c.Mounts[0].ReadOnly {
		t.Errorf("EPC mounts %v, want %s read-only from /run/aesmd", c.Mounts, tee.AESMSocketDir)
	}
	if c.Envs[EnvEPCLimitMiB] != "4" || resp.ContainerResponses[1].Envs[EnvEPCLimitMiB] != "1" {
		t.Errorf("EPC envs %v and %v, want %s=4 and 1", c.Envs, resp.ContainerResponses[1].Envs, EnvEPCLimitMiB)
	}
	if c.Annotations[AnnotationRuntimeArgs] != "memory=4M" {
		t.Errorf("EPC annotations %v, want %s=memory=4M", c.Annotations, AnnotationRuntimeArgs)
	}
	// The annotation is what rune reads as ENCLAVE_RUNTIME_ARGS when the container sets none,
	// and the container's own env wins.
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, want: []string{"memory=4M"}},
		{env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm", "ENCLAVE_RUNTIME_ARGS=memory=2M"}, want: []string{"memory=2M"}},
	} {
		spec := &specs.Spec{Process: &specs.Process{Env: tc.env}, Annotations: c.Annotations}
		s, err := enclave.FromSpec(spec)
		if err != nil {
			t.Fatalf("rune's settings from the allocation: %v", err)
		}
		if fmt.Sprint(s.Args) != fmt.Sprint(tc.want) {
			t.Errorf("rune reads runtime args %v from env %v and the allocation, want %v", s.Args, tc.env, tc.want)
		}
	}

	resp, err = clients[ResourceTDX].Allocate(context.Background(), &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: ids[ResourceTDX][:1]}}})
	if err != nil {
		t.Fatalf("Allocate TDX: %v", err)
	}
	c = resp.ContainerResponses[0]
	if got := deviceSpecs(c.Devices); fmt.Sprint(got) != "[/dev/tdx_guest <- /dev/tdx_guest rw]" {
		t.Errorf("TDX devices %v", got)
	}
	if len(c.Mounts) != 1 || c.Mounts[0].HostPath != tee.TSMReportDir || c.Mounts[0].ContainerPath != tee.TSMReportDir || c.Mounts[0].ReadOnly {
		t.Errorf("TDX mounts %v, want %s read-write", c.Mounts, tee.TSMReportDir)
	}

	resp, err = clients[ResourceSim].Allocate(context.Background(), &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: ids[ResourceSim]}}})
	if err != nil {
		t.Fatalf("Allocate sim: %v", err)
	}
	if c := resp.ContainerResponses[0]; len(c.Devices)+len(c.Mounts)+len(c.Envs)+len(c.Annotations) != 0 {
		t.Errorf("the simulated TEE gave the container %v", c)
	}

	for _, tc := range []struct {
		name string
		ids  []string
		code codes.Code
	}{
		{"unknown device", []string{"epc-n9-0"}, codes.NotFound},
		{"another resource's device", ids[ResourceSim][:1], codes.NotFound},
		{"twice", []string{epc[0], epc[0]}, codes.InvalidArgument},
		{"none", nil, codes.InvalidArgument},
	} {
		_, err := clients[ResourceEPC].Allocate(context.Background(), &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: tc.ids}}})
		if status.Code(err) != tc.code {
			t.Errorf("Allocate %s: %v, want code %s", tc.name, err, tc.code)
		}
	}
}

func deviceSpecs(devs []*pb.DeviceSpec) []string {
	var out []string
	for _, d := range devs {
		out = append(out, d.ContainerPath+" <- "+d.HostPath+" "+d.Permissions)
	}
	sort.Strings(out)
	return out
}

// TestAllocateOptions: without the provisioning option, no provisioning device; without the
// runtime-args option, the limit is only an env; no aesmd, no mount.
func TestAllocateOptions(t *testing.T) {
	p, err := New(Config{PluginDir: "/nonexistent", HostRoot: hostTree(t, map[string]string{
		"/dev/sgx_enclave": "", "/dev/sgx_provision": "",
	}, nil), EPCMiB: 8, Log: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	c := p.containerResponse(ResourceEPC, []string{"epc-0", "epc-1"})
	if got := deviceSpecs(c.Devices); fmt.Sprint(got) != "[/dev/sgx_enclave <- /dev/sgx_enclave rw]" {
		t.Errorf("devices %v, want only the enclave device", got)
	}
	if len(c.Mounts) != 0 || len(c.Annotations) != 0 || c.Envs[EnvEPCLimitMiB] != "2" {
		t.Errorf("mounts %v, annotations %v, envs %v", c.Mounts, c.Annotations, c.Envs)
	}
}

func TestHealthChanges(t *testing.T) {
	dir := socketDir(t)
	k := startKubelet(t, dir)
	root := hostTree(t, map[string]string{"/dev/sgx_enclave": "", "/dev/tdx_guest": ""}, nil)
	startPlugin(t, Config{PluginDir: dir, HostRoot: root, EPCMiB: 4, TDXSlots: 2})
	streams := map[string]pb.DevicePlugin_ListAndWatchClient{}
	clients := map[string]pb.DevicePluginClient{}
	for range 2 {
		r := k.next(t)
		clients[r.ResourceName] = dial(t, dir, r.Endpoint)
		devs, s := watch(t, clients[r.ResourceName])
		if !allHealth(pb.Healthy)(devs) {
			t.Fatalf("%s: first list %v", r.ResourceName, devs)
		}
		streams[r.ResourceName] = s
	}

	tdx := filepath.Join(root, "dev/tdx_guest")
	if err := os.Remove(tdx); err != nil {
		t.Fatal(err)
	}
	devs := recvUntil(t, streams[ResourceTDX], "unhealthy TDX devices", allHealth(pb.Unhealthy))
	if len(devs) != 2 {
		t.Errorf("%d TDX devices after the device went away, want the 2 advertised", len(devs))
	}
	_, err := clients[ResourceTDX].Allocate(context.Background(), &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{devs[0].ID}}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Allocate of an unhealthy device: %v, want FailedPrecondition", err)
	}

	if err := os.WriteFile(tdx, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, streams[ResourceTDX], "healthy TDX devices again", allHealth(pb.Healthy))

	// SGX going away makes EPC unhealthy; it did not change when TDX did.
	if err := os.Remove(filepath.Join(root, "dev/sgx_enclave")); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, streams[ResourceEPC], "unhealthy EPC devices", allHealth(pb.Unhealthy))
}

// TestLateDevice: a TEE whose device appears after the plugin started is registered then.
func TestLateDevice(t *testing.T) {
	dir := socketDir(t)
	k := startKubelet(t, dir)
	root := hostTree(t, map[string]string{"/dev/": ""}, nil)
	startPlugin(t, Config{PluginDir: dir, HostRoot: root, SNPSlots: 1, SimSlots: 1})
	if r := k.next(t); r.ResourceName != ResourceSim {
		t.Fatalf("registered %s, want %s", r.ResourceName, ResourceSim)
	}
	if err := os.WriteFile(filepath.Join(root, "dev/sev-guest"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := k.next(t)
	if r.ResourceName != ResourceSNP {
		t.Fatalf("registered %s, want %s", r.ResourceName, ResourceSNP)
	}
	devs, _ := watch(t, dial(t, dir, r.Endpoint))
	if len(devs) != 1 || devs[0].ID != "snp-0" || devs[0].Health != pb.Healthy {
		t.Errorf("SNP devices %v", devs)
	}
}

// TestReregistrationSocketReplaced: a kubelet.sock replaced while the plugin's sockets stay (a
// kubelet that does not clean up) is a new kubelet too. (A real kubelet's restart, which removes
// the plugins' sockets, is tests/k8s's: there the plugin registers again with the real kubelet,
// which then admits pods asking for its resource.)
func TestReregistrationSocketReplaced(t *testing.T) {
	dir := socketDir(t)
	k := startKubelet(t, dir)
	startPlugin(t, Config{PluginDir: dir, HostRoot: hostTree(t, map[string]string{"/dev/sgx_enclave": ""}, nil), EPCMiB: 3, SimSlots: 2})
	first := map[string]*pb.RegisterRequest{}
	for range 2 {
		r := k.next(t)
		first[r.ResourceName] = r
	}
	k.stop()
	k = startKubelet(t, dir)
	for range 2 {
		r := k.next(t)
		if !proto.Equal(r, first[r.ResourceName]) {
			t.Errorf("%s: re-registered as %v, first as %v", r.ResourceName, r, first[r.ResourceName])
		}
		if _, err := os.Stat(filepath.Join(dir, r.Endpoint)); err != nil {
			t.Errorf("%s: registered endpoint: %v", r.ResourceName, err)
		}
	}
}

// TestRegistrationRetry: a plugin that starts before the kubelet registers once it is up,
// and a kubelet that refuses is asked again.
func TestRegistrationRetry(t *testing.T) {
	dir := socketDir(t)
	startPlugin(t, Config{PluginDir: dir, HostRoot: hostTree(t, map[string]string{"/dev/": ""}, nil), SimSlots: 1})
	// Wait until the plugin serves; only then start the kubelet.
	deadline := time.Now().Add(waitLimit)
	for {
		if _, ok := socketIdentity(filepath.Join(dir, socketNames[ResourceSim])); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin never created its socket")
		}
		time.Sleep(testPoll)
	}
	refusing := &refusingKubelet{refusals: 2}
	l, err := net.Listen("unix", filepath.Join(dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterRegistrationServer(srv, refusing)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	select {
	case r := <-refusing.accepted():
		if r.ResourceName != ResourceSim {
			t.Errorf("registered %s", r.ResourceName)
		}
	case <-time.After(waitLimit):
		t.Fatal("the plugin gave up registering")
	}
}

type refusingKubelet struct {
	pb.UnimplementedRegistrationServer
	mu       sync.Mutex
	refusals int
	ok       chan *pb.RegisterRequest
	once     sync.Once
}

func (k *refusingKubelet) accepted() chan *pb.RegisterRequest {
	k.once.Do(func() { k.ok = make(chan *pb.RegisterRequest, 8) })
	return k.ok
}

func (k *refusingKubelet) Register(_ context.Context, r *pb.RegisterRequest) (*pb.Empty, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refusals > 0 {
		k.refusals--
		return nil, status.Error(codes.Unavailable, "device manager not ready")
	}
	k.accepted() <- r
	return &pb.Empty{}, nil
}

func TestShutdownRemovesSockets(t *testing.T) {
	dir := socketDir(t)
	k := startKubelet(t, dir)
	rp := startPlugin(t, Config{PluginDir: dir, HostRoot: hostTree(t, map[string]string{"/dev/": ""}, nil), SimSlots: 1})
	r := k.next(t)
	_, stream := watch(t, dial(t, dir, r.Endpoint))
	rp.shutdown(t)
	if _, err := os.Stat(filepath.Join(dir, r.Endpoint)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after shutdown: %v", err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("ListAndWatch stream still open after shutdown")
	}
	if _, err := os.Stat(k.socket); err != nil {
		t.Errorf("the plugin touched kubelet.sock: %v", err)
	}
}

func TestPreferredAllocation(t *testing.T) {
	// NUMA node 0 has n0-0..n0-3, node 1 has n1-0..n1-7.
	var avail []string
	topo, order := map[string]int64{}, map[string]int{}
	for n, count := range []int{4, 8} {
		for i := range count {
			id := fmt.Sprintf("n%d-%d", n, i)
			topo[id], order[id] = int64(n), len(avail)
			avail = append(avail, id)
		}
	}
	tests := []struct {
		name    string
		avail   []string
		must    []string
		size    int
		want    string
		wantErr bool
	}{
		{name: "fits the emptier node", avail: avail, size: 6, want: "[n1-0 n1-1 n1-2 n1-3 n1-4 n1-5]"},
		{name: "spills over", avail: avail, size: 10, want: "[n1-0 n1-1 n1-2 n1-3 n1-4 n1-5 n1-6 n1-7 n0-0 n0-1]"},
		{name: "stays with must-include", avail: avail, must: []string{"n0-2"}, size: 3, want: "[n0-2 n0-0 n0-1]"},
		{name: "only what is available", avail: []string{"n1-7", "n0-3", "n1-2"}, size: 2, want: "[n1-2 n1-7]"},
		{name: "zero", avail: avail, size: 0, want: "[]"},
		{name: "too many", avail: avail[:3], size: 4, wantErr: true},
		{name: "negative", avail: avail, size: -1, wantErr: true},
		{name: "must-include unavailable", avail: avail[:2], must: []string{"n1-0"}, size: 1, wantErr: true},
		{name: "must-include twice", avail: avail, must: []string{"n1-0", "n1-0"}, size: 2, wantErr: true},
		{name: "more must-include than size", avail: avail, must: []string{"n1-0", "n1-1"}, size: 1, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := preferredAllocation(tc.avail, tc.must, tc.size, topo, order)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("got %v, want %s", got, tc.want)
			}
		})
	}

	// Through the plugin: EPC devices carry their node, and the answer packs them.
	dir := socketDir(t)
	k := startKubelet(t, dir)
	startPlugin(t, Config{PluginDir: dir, HostRoot: sgxHost(t)})
	r := k.next(t)
	c := dial(t, dir, r.Endpoint)
	devs, _ := watch(t, c)
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	resp, err := c.GetPreferredAllocation(context.Background(), &pb.PreferredAllocationRequest{ContainerRequests: []*pb.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: ids, AllocationSize: 40},
		{AvailableDeviceIDs: ids, MustIncludeDeviceIDs: []string{"epc-n1-5"}, AllocationSize: 20},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantNode := range []string{"epc-n0-", "epc-n1-"} {
		got := resp.ContainerResponses[i].DeviceIDs
		for _, id := range got {
			if !strings.HasPrefix(id, wantNode) {
				t.Errorf("container %d: %v spans NUMA nodes, want all %s*", i, got, wantNode)
				break
			}
		}
	}
	_, err = c.GetPreferredAllocation(context.Background(), &pb.PreferredAllocationRequest{ContainerRequests: []*pb.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: ids[:2], AllocationSize: 3},
	}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("impossible preferred allocation: %v, want InvalidArgument", err)
	}
}

// TestListSizeFitsKubelet: the largest EPC list stays under the 4 MiB the kubelet's gRPC
// client accepts by default.
func TestListSizeFitsKubelet(t *testing.T) {
	files := map[string]string{"/dev/sgx_enclave": ""}
	for n := range 4 {
		files[fmt.Sprintf("/sys/devices/system/node/node%d/x86/sgx_total_bytes", n)] = fmt.Sprintf("%d\n", uint64(512)<<30)
	}
	p, err := New(Config{PluginDir: "/nonexistent", HostRoot: hostTree(t, files, nil), Log: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := p.probe(ResourceEPC)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != DefaultMaxEPCMiB {
		t.Errorf("%d devices advertised for 2 TiB of EPC, want the limit %d", len(devs), DefaultMaxEPCMiB)
	}
	if size := proto.Size(&pb.ListAndWatchResponse{Devices: devs}); size >= 4<<20 {
		t.Errorf("ListAndWatch message of %d bytes exceeds the kubelet's 4 MiB", size)
	}
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{
		{PluginDir: "relative"},
		{PluginDir: "/p", HostRoot: "host"},
		{PluginDir: "/p", SimSlots: -1},
		{PluginDir: "/p", EPCMiB: -5},
		{PluginDir: "/p", PollInterval: -time.Second},
		{PluginDir: "/" + strings.Repeat("d", 100)},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		} else {
			t.Log(err)
		}
	}
}

func TestParseEPCBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{in: "67108864\n", want: 64 * mib},
		{in: "0\n", want: 0},
		{in: "4096", want: 4096},
		{in: "18446744073709551615\n", want: 1<<64 - 1},
		{in: "18446744073709551616\n", wantErr: true},
		{in: "", wantErr: true},
		{in: "\n", wantErr: true},
		{in: "-1\n", wantErr: true},
		{in: " 12\n", wantErr: true},
		{in: "12\n\n", wantErr: true},
		{in: "0x100\n", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseEPCBytes([]byte(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseEPCBytes(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParseEPCBytes(f *testing.F) {
	for _, s := range []string{"67108864\n", "0", "", "99999999999999999999999\n", "12 \n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseEPCBytes(data)
		if err != nil {
			if n != 0 {
				t.Errorf("error with value %d", n)
			}
			return
		}
		// A number read is the number written, leading zeros aside.
		digits := strings.TrimLeft(strings.TrimSuffix(string(data), "\n"), "0")
		if digits == "" {
			digits = "0"
		}
		if got := strconv.FormatUint(n, 10); got != digits {
			t.Errorf("ParseEPCBytes(%q) = %s", data, got)
		}
	})
}

// TestLastingProblemLoggedOnce: the host is probed every poll; a problem that lasts is one log
// line, and a new problem is another.
func TestLastingProblemLoggedOnce(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	root := hostTree(t, map[string]string{"/dev/sgx_enclave": "", "/sys/devices/system/node/node0/x86/sgx_total_bytes": "lots\n"}, nil)
	p, err := New(Config{PluginDir: "/nonexistent", HostRoot: root, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	errorsLogged := func() (n int) {
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.ErrorLevel {
				n++
			}
		}
		return n
	}
	for range 3 {
		p.rescan()
	}
	if n := errorsLogged(); n != 1 {
		t.Errorf("%d errors logged for one lasting problem, want 1", n)
	}
	if err := os.WriteFile(filepath.Join(root, "sys/devices/system/node/node0/x86/sgx_total_bytes"), []byte("-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.rescan()
	p.rescan()
	if n := errorsLogged(); n != 2 {
		t.Errorf("%d errors logged after the problem changed, want 2", n)
	}
}
