// Package critest runs the Kubernetes CRI validation suite (critest, from sigs.k8s.io/cri-tools)
// against containerd's CRI with three runtime handlers, runc, rune, and rune-sim-native (deploy/'s
// handler that makes every container an enclave container), and compares them spec by spec:
// rune must do what runc does, and so must enclave containers, except where the design says
// otherwise (Exceptions, each with its reason).
//
// The non-test part builds critest (Install), the images it runs (ImportImages: busybox and
// small stand-ins under the names critest asks for, made locally, never pulled) and runs it
// (Run). containerd, its shims and the containers run in private mount, network and IPC
// namespaces (tests/cri's isolated Env) where critest joins them: nothing of the host's
// containerd, network or IPC is seen or touched, and nothing is left behind (the test checks
// cgroups and namespaces after each run). It must never pull from a registry or use a host
// network range: pods get 198.18.0.0/24.
package critest
