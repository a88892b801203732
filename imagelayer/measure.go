package imagelayer

import (
	"os"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// MeasuredLayers is what the measurement covers of the encrypted layers in the file system at
// root (enclave.LayerMeasured of each blob's digest): PID 1 measures them in the container, prepare in the
// rootfs on the host, with this one function.
func MeasuredLayers(root *os.File, layers []enclave.Layer) ([]string, error) {
	dirs := make([]string, len(layers))
	for i, l := range layers {
		dirs[i] = l.Dir
	}
	sums, err := BlobDigests(root, dirs)
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		sums[i] = enclave.LayerMeasured(sums[i], l.Target)
	}
	return sums, nil
}
