package runelet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/imagelayer"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"golang.org/x/sys/unix"
)

// secretsTimeout bounds attesting to the broker and fetching every secret at start.
const secretsTimeout = 2 * time.Minute

// broker is the enclave's client of its key broker, made on first use and kept: a session
// serves every later resource request until it expires (the client then attests again).
type broker struct {
	once   sync.Once
	client *kbs.Client
	err    error
}

func (p *pid1) brokerClient() (*kbs.Client, error) {
	p.broker.once.Do(func() {
		k := p.cfg.Settings.KBS
		if k == nil {
			p.broker.err = errors.New("this enclave has no key broker (ENCLAVE_KBS_URL)")
			return
		}
		if p.evidence == nil {
			p.broker.err = fmt.Errorf("no attester for enclave type %q: the broker cannot be attested to", p.cfg.Settings.Type)
			return
		}
		cfg := kbs.ClientConfig{URL: k.URL, TEE: attestation.TEE(p.cfg.Settings.Type), Pin: k.Pin,
			Evidence: kbs.EvidenceFunc(p.evidence)}
		if k.CA != "" {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM([]byte(k.CA)) {
				p.broker.err = fmt.Errorf("%s holds no usable certificate", enclave.EnvKBSCA)
				return
			}
		}
		p.broker.client, p.broker.err = kbs.NewClient(cfg)
	})
	return p.broker.client, p.broker.err
}

// placeSecrets attests to the broker and writes each secret to its path, readable by the
// workload's user only, before the workload runs. The directories are the in-memory file systems
// rune mounted for them.
func (p *pid1) placeSecrets() error {
	k := p.cfg.Settings.KBS
	if k == nil {
		return nil
	}
	c, err := p.brokerClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), secretsTimeout)
	defer cancel()
	for _, s := range k.Secrets {
		data, err := c.Resource(ctx, s.ID)
		if err != nil {
			return fmt.Errorf("secret %s: %w", s.ID, err)
		}
		if err := writeSecret(s.Path, data); err != nil {
			return fmt.Errorf("secret %s: %w", s.ID, err)
		}
	}
	return nil
}

// writeSecret creates path (mode 0400, owned by this process's user, which is the workload's) and
// writes data; it never follows a link, never replaces a file, and leaves no partial file.
func writeSecret(path string, data []byte) error {
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), filepath.Base(path), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = unix.Unlinkat(int(dir.Fd()), filepath.Base(path), 0)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// resource fetches a resource of the broker for the enclave's workload at run time.
func (p *pid1) resource(ctx context.Context, id string) ([]byte, error) {
	if err := kbs.CheckResourcePath(id); err != nil {
		return nil, err
	}
	c, err := p.brokerClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, secretsTimeout)
	defer cancel()
	return c.Resource(ctx, id)
}

// resourceResponse fetches a resource for a process of the enclave at run time.
func (p *pid1) resourceResponse(id string) *agent.Response {
	r := p.info()
	data, err := p.resource(context.Background(), id)
	if err != nil {
		r.SetError(err)
		return r
	}
	r.Resource = data
	return r
}

// measureLayers measures the encrypted layers in the container's file system.
func measureLayers(layers []enclave.Layer) ([]string, error) {
	root, err := os.Open("/")
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return enclave.MeasureLayers(layers, func(dirs []string) ([]string, error) { return imagelayer.BlobDigests(root, dirs) })
}

// unpackLayers decrypts each encrypted layer with the key-encryption key the broker releases
// after attestation and unpacks it into its in-memory target, before the workload runs; each
// blob must still be the one measured at init.
func (p *pid1) unpackLayers() error {
	k := p.cfg.Settings.KBS
	if k == nil || len(k.Layers) == 0 {
		return nil
	}
	c, err := p.brokerClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), secretsTimeout)
	defer cancel()
	root, err := os.Open("/")
	if err != nil {
		return err
	}
	defer root.Close()
	for i, l := range k.Layers {
		digest, _, _ := strings.Cut(p.layers[i], ":")
		kek := func(kid string) ([]byte, error) { return c.Resource(ctx, kid) }
		if err := imagelayer.Unpack(root, imagelayer.Layer{Dir: l.Dir, Target: l.Target}, digest, kek); err != nil {
			return err
		}
	}
	return nil
}
