package deviceplugin

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"

	"github.com/sirupsen/logrus"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Resource names, as pods request them.
const (
	// ResourceEPC is SGX enclave page cache in MiB (one device per MiB).
	ResourceEPC = "sgx.intel.com/epc"
	// ResourceTDX is a slot on an Intel TDX guest (a container that may ask for TDX evidence).
	ResourceTDX = "inclavare.io/tdx"
	// ResourceSNP is a slot on an AMD SEV-SNP guest.
	ResourceSNP = "inclavare.io/snp"
	// ResourceSim is a slot of rune's simulated TEE: no hardware, no confidentiality.
	ResourceSim = "inclavare.io/sim"
)

// Allocation results that tell the container and rune about the enclave memory limit.
const (
	// EnvEPCLimitMiB is set to the number of EPC MiB allocated to the container.
	EnvEPCLimitMiB = "ENCLAVE_EPC_LIMIT_MIB"
	// AnnotationRuntimeArgs is the Inclavare Containers annotation rune reads as
	// ENCLAVE_RUNTIME_ARGS when the container sets no such env (enclave.AnnotationArgs).
	AnnotationRuntimeArgs = "enclave.runtime.args"
)

// Defaults of Config.
const (
	// DefaultSlots matches the kubelet's default of 110 pods per node, so that slots never
	// limit a node below what it can run anyway.
	DefaultSlots = 110
	// DefaultMaxEPCMiB bounds the EPC devices advertised: the kubelet reads ListAndWatch
	// with gRPC's default 4 MiB message limit, and 65536 devices stay well under it.
	DefaultMaxEPCMiB = 65536
)

// socketNames are the plugin's socket file names in the device-plugin directory.
var socketNames = map[string]string{
	ResourceEPC: "inclavare-sgx-epc.sock",
	ResourceTDX: "inclavare-tdx.sock",
	ResourceSNP: "inclavare-snp.sock",
	ResourceSim: "inclavare-sim.sock",
}

// devicePrefixes start the device IDs of each resource.
var devicePrefixes = map[string]string{
	ResourceEPC: "epc",
	ResourceTDX: "tdx",
	ResourceSNP: "snp",
	ResourceSim: "sim",
}

// Resources lists every resource the plugin can advertise, in registration order.
var Resources = []string{ResourceEPC, ResourceTDX, ResourceSNP, ResourceSim}

// errUnavailable marks a TEE that this host does not have (right now).
var errUnavailable = errors.New("not available on this host")

// probe returns the devices resource has on the host now, or an error wrapping
// errUnavailable when its TEE is absent.
func (p *Plugin) probe(resource string) ([]*pb.Device, error) {
	switch resource {
	case ResourceEPC:
		if len(p.host.devicePaths(tee.SGXEnclaveDevices)) == 0 {
			return nil, fmt.Errorf("no SGX enclave device (%s): %w", strings.Join(tee.SGXEnclaveDevices, ", "), errUnavailable)
		}
		return p.epcDevices()
	case ResourceTDX:
		return slots(resource, p.cfg.TDXSlots, p.host.devicePaths(tee.TDXDevices), tee.TDXDevices)
	case ResourceSNP:
		return slots(resource, p.cfg.SNPSlots, p.host.devicePaths(tee.SNPDevices), tee.SNPDevices)
	case ResourceSim:
		if p.cfg.SimSlots <= 0 {
			return nil, fmt.Errorf("no simulated slots configured: %w", errUnavailable)
		}
		return slotDevices(resource, p.cfg.SimSlots), nil
	}
	return nil, fmt.Errorf("unknown resource %q", resource)
}

func slots(resource string, n int, present []devicePath, candidates []string) ([]*pb.Device, error) {
	if n <= 0 {
		return nil, fmt.Errorf("no slots configured: %w", errUnavailable)
	}
	if len(present) == 0 {
		return nil, fmt.Errorf("no device (%s): %w", strings.Join(candidates, ", "), errUnavailable)
	}
	return slotDevices(resource, n), nil
}

func slotDevices(resource string, n int) []*pb.Device {
	devs := make([]*pb.Device, n)
	for i := range devs {
		devs[i] = &pb.Device{ID: devicePrefixes[resource] + "-" + strconv.Itoa(i), Health: pb.Healthy}
	}
	return devs
}

// epcDevices is one device per MiB of EPC, each on its NUMA node, at most MaxEPCMiB.
func (p *Plugin) epcDevices() ([]*pb.Device, error) {
	limit := p.cfg.MaxEPCMiB
	if p.cfg.EPCMiB > 0 {
		n := min(p.cfg.EPCMiB, limit)
		devs := make([]*pb.Device, n)
		for i := range devs {
			devs[i] = &pb.Device{ID: "epc-" + strconv.Itoa(i), Health: pb.Healthy}
		}
		return devs, nil
	}
	nodes, err := p.host.readEPC()
	if err != nil {
		return nil, err
	}
	var devs []*pb.Device
	var total uint64
	for _, n := range nodes {
		total += n.bytes >> 20
		topo := &pb.TopologyInfo{Nodes: []*pb.NUMANode{{ID: n.node}}}
		for i := uint64(0); i < n.bytes>>20 && int64(len(devs)) < limit; i++ {
			devs = append(devs, &pb.Device{
				ID:       fmt.Sprintf("epc-n%d-%d", n.node, i),
				Health:   pb.Healthy,
				Topology: topo,
			})
		}
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("the kernel reports no SGX memory (less than 1 MiB) in %s: %w", SysfsNodeDir, errUnavailable)
	}
	if total > uint64(len(devs)) {
		p.sayOnce("epc limit", logrus.WarnLevel, fmt.Sprintf("%s: the node has %d MiB of EPC; advertising %d (raise the EPC device limit to advertise more)", ResourceEPC, total, len(devs)))
	}
	return devs, nil
}

// containerResponse is what a container that was allocated ids of resource gets. It looks at
// the host at allocation time, so that a device added or removed since the last poll is seen.
func (p *Plugin) containerResponse(resource string, ids []string) *pb.ContainerAllocateResponse {
	r := &pb.ContainerAllocateResponse{}
	addDevices := func(paths []devicePath) {
		for _, d := range paths {
			r.Devices = append(r.Devices, &pb.DeviceSpec{ContainerPath: d.container, HostPath: d.host, Permissions: "rw"})
		}
	}
	switch resource {
	case ResourceEPC:
		addDevices(p.host.devicePaths(tee.SGXEnclaveDevices))
		if p.cfg.SGXProvision {
			addDevices(p.host.devicePaths(tee.SGXProvisionDevices))
		}
		if host, ok := p.host.dir(tee.AESMSocketDir); ok {
			r.Mounts = append(r.Mounts, &pb.Mount{ContainerPath: tee.AESMSocketDir, HostPath: host, ReadOnly: true})
		}
		mib := strconv.Itoa(len(ids))
		r.Envs = map[string]string{EnvEPCLimitMiB: mib}
		if p.cfg.EPCRuntimeArgs {
			r.Annotations = map[string]string{AnnotationRuntimeArgs: "memory=" + mib + "M"}
		}
	case ResourceTDX, ResourceSNP:
		cands := tee.TDXDevices
		if resource == ResourceSNP {
			cands = tee.SNPDevices
		}
		addDevices(p.host.devicePaths(cands))
		if host, ok := p.host.dir(tee.TSMReportDir); ok {
			r.Mounts = append(r.Mounts, &pb.Mount{ContainerPath: tee.TSMReportDir, HostPath: host})
		}
	case ResourceSim:
		// Nothing to give: the simulated TEE is rune's own.
	}
	return r
}

// sameDevices reports whether two device lists advertise the same thing.
func sameDevices(a, b []*pb.Device) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Health != b[i].Health || numaNode(a[i]) != numaNode(b[i]) {
			return false
		}
	}
	return true
}

// numaNode is a device's NUMA node, or -1 without topology.
func numaNode(d *pb.Device) int64 {
	if d.Topology == nil || len(d.Topology.Nodes) == 0 {
		return -1
	}
	return d.Topology.Nodes[0].ID
}

// preferredAllocation picks size devices from available: must-include first, then from the
// NUMA nodes that already hold them, then from the nodes with the most free devices, so that
// one container's EPC spans as few nodes as possible. Within a node, devices keep their
// advertised order. order maps a device ID to its advertised position.
func preferredAllocation(available, mustInclude []string, size int, topo map[string]int64, order map[string]int) ([]string, error) {
	if size < 0 {
		return nil, fmt.Errorf("allocation size %d is negative", size)
	}
	avail := map[string]bool{}
	for _, id := range available {
		avail[id] = true
	}
	if size > len(avail) {
		return nil, fmt.Errorf("allocation size %d is more than the %d devices available", size, len(avail))
	}
	if len(mustInclude) > size {
		return nil, fmt.Errorf("%d devices must be included in an allocation of %d", len(mustInclude), size)
	}
	chosen := make([]string, 0, size)
	taken := map[string]bool{}
	mustNodes := map[int64]bool{}
	for _, id := range mustInclude {
		if !avail[id] {
			return nil, fmt.Errorf("device %q must be included but is not available", id)
		}
		if taken[id] {
			return nil, fmt.Errorf("device %q must be included twice", id)
		}
		taken[id] = true
		chosen = append(chosen, id)
		mustNodes[topo[id]] = true
	}
	free := map[int64][]string{}
	for id := range avail {
		if !taken[id] {
			free[topo[id]] = append(free[topo[id]], id)
		}
	}
	nodes := make([]int64, 0, len(free))
	for n, ids := range free {
		nodes = append(nodes, n)
		sort.Slice(ids, func(i, j int) bool { return order[ids[i]] < order[ids[j]] })
	}
	sort.Slice(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		if mustNodes[a] != mustNodes[b] {
			return mustNodes[a]
		}
		if len(free[a]) != len(free[b]) {
			return len(free[a]) > len(free[b])
		}
		return a < b
	})
	for _, n := range nodes {
		for _, id := range free[n] {
			if len(chosen) == size {
				return chosen, nil
			}
			chosen = append(chosen, id)
		}
	}
	return chosen, nil
}
