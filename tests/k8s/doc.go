// Package k8s runs Inclavare Containers the way Kubernetes users meet it: a real single-node
// cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet, kubectl)
// on loopback, whose node's containerd (Debian's 1.6, or 2.x built from the module proxy) has
// the runtime handler "rune" as deploy/containerd/ ships it. The tests apply deploy/'s
// manifests as shipped (RuntimeClass, device plugin and installer DaemonSets, examples) and
// run rune pods through the kubelet: ordinary, enclave (sim native, sim wasm), carrier-
// converted, attested from the host with shelter, and through kubelet and containerd crashes.
//
// The cluster's programs are built once per machine from the Go module proxy (build.go) and
// cached by version in the user cache directory; certificates are made for each run. Cluster
// must never touch a daemon, socket, state directory, cgroup or process it did not create,
// never send traffic off the machine, and must leave the node as it found it: the node state
// the kubelet changes outside the cluster's directory (sysctls, /var/lib/kubelet/device-plugins,
// /var/log/pods and /var/log/containers, its cgroups, the CNI bridge) is saved and restored.
// The tests need root; with CI=true a missing prerequisite fails instead of skipping.
package k8s
