// Package deviceplugin is a Kubernetes device plugin (kubelet device plugin API v1beta1, gRPC
// over unix sockets) that advertises a node's TEE capacity, so that the scheduler places
// enclave pods only where their TEE is, and so that each enclave container gets the device
// nodes, mounts and memory limit its TEE needs.
//
// Resources (see the Resource* constants):
//
//   - sgx.intel.com/epc: SGX enclave page cache, one device per MiB. The size is read from
//     the kernel's per-NUMA-node attribute /sys/devices/system/node/node<N>/x86/sgx_total_bytes
//     (Linux ≥ 5.17; /proc/cpuinfo only has the "sgx" flag, not a size), or given explicitly
//     (Config.EPCMiB) on older kernels. Devices carry their NUMA node, and preferred
//     allocations keep a container's EPC on as few nodes as possible. Available while an SGX
//     enclave device node exists (/dev/sgx_enclave, /dev/sgx/enclave or /dev/isgx).
//   - inclavare.io/tdx, inclavare.io/snp: a configurable number of slots, available while
//     the TDX (/dev/tdx_guest) or SEV-SNP (/dev/sev-guest) guest device exists.
//   - inclavare.io/sim: slots of rune's simulated TEE (ENCLAVE_TYPE=sim). Always available,
//     and never a confidentiality boundary: the name says so.
//
// Allocate gives a container the device nodes of its TEE that exist on the host (the
// legacy SGX names too, mapped to the node they link to), the aesmd socket directory for SGX
// (read-only: connecting to a socket needs no write access to the mount), and the
// configfs-tsm report directory for TDX and SNP when present.
//
// How an EPC request becomes an enclave memory limit: a container that requests
// sgx.intel.com/epc: N gets the env ENCLAVE_EPC_LIMIT_MIB=N, and (Config.EPCRuntimeArgs) the
// container annotation enclave.runtime.args=memory=NM. rune reads enclave.runtime.args when
// the container sets no ENCLAVE_RUNTIME_ARGS env of its own (env first, then annotation: the
// Inclavare Containers contract), and builtin:wasm caps every linear memory at that size
// (memory=<n>M, a multiple of 64 KiB and at most 4 GiB). containerd's CRI passes container
// annotations to the runtime only when the runtime handler allows them, hence
// container_annotations = ["enclave.*"] in deploy/'s containerd configuration. A container
// that sets ENCLAVE_RUNTIME_ARGS itself must include memory=<n>M itself; ENCLAVE_EPC_LIMIT_MIB
// tells it n.
//
// Lifecycle: each available resource is served on its own socket in the kubelet's
// device-plugin directory and registered with the kubelet (Register on kubelet.sock). The
// host is probed again every poll interval: a TEE device that disappears turns that
// resource's devices Unhealthy (and back when it returns), a TEE that appears later is then
// registered, and a kubelet restart (kubelet.sock recreated, or this plugin's socket
// removed) leads to a fresh socket and a new registration.
//
// This package must never grant a device that the host does not have, never allocate a
// device ID it did not advertise or that is unhealthy, and never present the simulated TEE
// as hardware.
package deviceplugin
