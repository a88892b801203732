package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

// SpecFile is the name of a bundle's configuration.
const SpecFile = "config.json"

// LoadSpec reads and checks bundle/config.json. Errors name the file and the problem.
func LoadSpec(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, SpecFile)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("JSON specification file %s not found", path)
		}
		return nil, err
	}
	defer f.Close()
	var spec *specs.Spec
	if err := json.NewDecoder(f).Decode(&spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if spec == nil {
		return nil, errors.New("config cannot be null")
	}
	if err := ValidateProcess(spec.Process); err != nil {
		return nil, err
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("%s: root.path must be set", path)
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", root, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s is not a directory", root)
	}
	return spec, nil
}

// CreateOptions are the command-line choices that shape a container's libcontainer config.
type CreateOptions struct {
	Root            string
	ID              string
	SystemdCgroup   bool
	NoPivotRoot     bool
	NoNewKeyring    bool
	RootlessCgroups bool
}

// CreateContainer converts spec and records a new container in o.Root. The process must run from the
// bundle directory, as relative paths in spec are resolved against it (runc's convention).
func CreateContainer(spec *specs.Spec, o CreateOptions) (*libcontainer.Container, error) {
	if o.ID == "" {
		return nil, errors.New("container id cannot be empty")
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       o.ID,
		UseSystemdCgroup: o.SystemdCgroup,
		NoPivotRoot:      o.NoPivotRoot,
		NoNewKeyring:     o.NoNewKeyring,
		Spec:             spec,
		RootlessEUID:     os.Geteuid() != 0,
		RootlessCgroups:  o.RootlessCgroups,
	})
	if err != nil {
		return nil, err
	}
	acceptIgnoredSettings(cfg)
	return libcontainer.Create(o.Root, o.ID, cfg)
}

// acceptIgnoredSettings keeps configs that runc 1.1 and the OCI validation suite accept and that the
// kernel ignores, instead of refusing them as libcontainer 1.5 does: filesystem options on a bind mount
// (a bind mount has no superblock of its own to apply them to) and a device number on a FIFO (mknod
// ignores it). Each one is logged, so that nobody believes it took effect.
func acceptIgnoredSettings(cfg *configs.Config) {
	for _, m := range cfg.Mounts {
		if m.IsBind() && m.Data != "" {
			logrus.Warnf("bind mount %s: ignoring filesystem options %q, which the kernel does not apply to bind mounts", m.Destination, m.Data)
			m.Data = ""
		}
	}
	for _, d := range cfg.Devices {
		if d.Type == devices.FifoDevice && (d.Major != 0 || d.Minor != 0) {
			logrus.Warnf("device %s is a FIFO: ignoring its device number %d:%d", d.Path, d.Major, d.Minor)
			d.Major, d.Minor = 0, 0
		}
	}
}
