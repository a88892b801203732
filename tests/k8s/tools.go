package k8s

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// FindTools finds the programs a cluster whose node runs containerd of generation gen needs,
// building Kubernetes, etcd and containerd 2.x into the test cache first where they are not
// there yet, and returns them with the static busybox the images are made from. The
// repository's bin/ must hold rune, init-runelet, containerd-shim-rune-v2, rune-carrier-helper and
// shelter (`make build`).
func FindTools(gen Generation) (Tools, string, error) {
	var t Tools
	runeBin, err := clients.RuneBinary()
	if err != nil {
		return t, "", err
	}
	t.Bin = filepath.Dir(runeBin)
	for _, b := range []string{"init-runelet", "containerd-shim-rune-v2", "rune-carrier-helper", "shelter"} {
		if _, err := os.Stat(filepath.Join(t.Bin, b)); err != nil {
			return t, "", fmt.Errorf("%s beside rune: %w (run make build)", b, err)
		}
	}
	for _, x := range []struct {
		name string
		dst  *string
	}{{"containerd", &t.Containerd}, {"ctr", &t.Ctr}, {"runc", &t.Runc}, {"go", &t.Go}} {
		if *x.dst, err = clients.LookBinary(x.name); err != nil {
			return t, "", fmt.Errorf("%w (scripts/install-deps.sh)", err)
		}
	}
	if _, err := clients.LookBinary("ip"); err != nil {
		return t, "", fmt.Errorf("%w (apt-get install iproute2)", err)
	}
	busybox, err := clients.BusyboxBinary()
	if err != nil {
		return t, "", fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	cache, err := clients.TestCacheDir()
	if err != nil {
		return t, "", err
	}
	if t.Kubernetes, err = InstallKubernetes(t.Go, cache); err != nil {
		return t, "", fmt.Errorf("Kubernetes %s: %w", KubernetesVersion, err)
	}
	etcdDir, err := InstallEtcd(t.Go, cache)
	if err != nil {
		return t, "", fmt.Errorf("etcd %s: %w", EtcdVersion, err)
	}
	t.Etcd = filepath.Join(etcdDir, "etcd")
	if gen == Containerd2 {
		dir, err := clients.InstallContainerd2(t.Go, cache)
		if err != nil {
			return t, "", fmt.Errorf("containerd %s: %w", clients.Containerd2Version, err)
		}
		t.Containerd, t.Ctr, t.RuncShimDir = filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr"), dir
	}
	return t, busybox, nil
}
