package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
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
	return libcontainer.Create(o.Root, o.ID, cfg)
}
