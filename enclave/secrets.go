package enclave

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/inclavare-containers/inclavare-go/internal/resourceid"
)

// Settings of the key broker that releases an enclave's secrets (verdictd, or trustee's KBS):
// env first, removed from the workload's environment, else the annotation.
const (
	EnvKBSURL  = "ENCLAVE_KBS_URL"
	EnvKBSPin  = "ENCLAVE_KBS_PIN"
	EnvKBSCA   = "ENCLAVE_KBS_CA"
	EnvSecrets = "ENCLAVE_SECRETS"

	AnnotationKBSURL  = "enclave.kbs.url"
	AnnotationKBSPin  = "enclave.kbs.pin"
	AnnotationKBSCA   = "enclave.kbs.ca"
	AnnotationSecrets = "enclave.secrets"
)

// KBS says where an enclave gets its secrets and how it knows the broker.
type KBS struct {
	// URL is the broker's https base URL.
	URL string `json:"url"`
	// Pin is "sha256:<hex>" of the broker certificate's SubjectPublicKeyInfo; or CA is a PEM
	// bundle the broker's certificate must chain to. Exactly one is set.
	Pin string `json:"pin,omitempty"`
	CA  string `json:"ca,omitempty"`
	// Secrets are the resources to place in the container before the workload runs.
	Secrets []Secret `json:"secrets,omitempty"`
	// Layers are encrypted image layers to unpack inside the enclave before the workload runs.
	Layers []Layer `json:"layers,omitempty"`
}

// Secret is one resource of the broker and the file it becomes in the container.
type Secret struct {
	// ID is "<repository>/<type>/<tag>".
	ID string `json:"id"`
	// Path is where the workload finds it: an absolute path whose directory is a private,
	// in-memory file system of the container.
	Path string `json:"path"`
}

// parseKBS reads the broker settings from vals (env names as keys).
func parseKBS(vals map[string]string) (*KBS, error) {
	if vals[EnvKBSURL] == "" && vals[EnvKBSPin] == "" && vals[EnvKBSCA] == "" && vals[EnvSecrets] == "" && vals[EnvLayers] == "" {
		return nil, nil
	}
	k := &KBS{URL: vals[EnvKBSURL], Pin: vals[EnvKBSPin], CA: vals[EnvKBSCA]}
	if s := vals[EnvSecrets]; s != "" {
		for _, item := range strings.Split(s, ",") {
			id, p, ok := strings.Cut(item, ":")
			if !ok {
				return nil, fmt.Errorf("%s item %q: want <repository>/<type>/<tag>:<path>", EnvSecrets, item)
			}
			k.Secrets = append(k.Secrets, Secret{ID: id, Path: p})
		}
	}
	if l := vals[EnvLayers]; l != "" {
		var err error
		if k.Layers, err = parseLayers(l); err != nil {
			return nil, err
		}
	}
	return k, k.Validate()
}

// Validate checks the broker settings on their own.
func (k *KBS) Validate() error {
	u, err := url.Parse(k.URL)
	if k.URL == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("%s %q: want the broker's https:// URL", EnvKBSURL, k.URL)
	}
	switch {
	case k.Pin == "" && k.CA == "":
		return fmt.Errorf("%s needs %s (sha256:<hex of the broker's public key>) or %s (PEM): an enclave trusts no broker by default", EnvKBSURL, EnvKBSPin, EnvKBSCA)
	case k.Pin != "" && k.CA != "":
		return fmt.Errorf("%s and %s exclude each other", EnvKBSPin, EnvKBSCA)
	case k.Pin != "":
		h, ok := strings.CutPrefix(k.Pin, "sha256:")
		if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%s %q: want sha256:<64 hex digits>", EnvKBSPin, k.Pin)
		}
	case !strings.Contains(k.CA, "-----BEGIN CERTIFICATE-----"):
		return fmt.Errorf("%s holds no PEM certificate", EnvKBSCA)
	}
	// No secrets is fine: the broker still serves a sealed workload's key and run-time fetches.
	seen := map[string]bool{}
	for _, s := range k.Secrets {
		if err := resourceid.Check(s.ID); err != nil {
			return fmt.Errorf("%s: %w", EnvSecrets, err)
		}
		if !path.IsAbs(s.Path) || path.Clean(s.Path) != s.Path || path.Dir(s.Path) == "/" {
			return fmt.Errorf("%s: path %q must be absolute, clean and below a directory of its own (not /)", EnvSecrets, s.Path)
		}
		if err := checkPrivateDir(path.Dir(s.Path)); err != nil {
			return fmt.Errorf("%s: path %q: %w; put secrets in a directory of their own (such as /run/secrets)", EnvSecrets, s.Path, err)
		}
		if seen[s.Path] {
			return fmt.Errorf("%s: path %q is named twice", EnvSecrets, s.Path)
		}
		seen[s.Path] = true
	}
	return k.validateLayers()
}

// Measured is what of the broker settings the enclave's measurement covers: which broker it
// trusts (the pin, or the CA bundle's digest) and which resource lands where. The URL is not: the
// node operator controls the network anyway, and a broker is known by its key, not its address.
func (k *KBS) Measured() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, 1+len(k.Secrets))
	if k.Pin != "" {
		out = append(out, "pin="+strings.ToLower(k.Pin))
	} else {
		sum := sha256.Sum256([]byte(k.CA))
		out = append(out, "ca-sha256="+hex.EncodeToString(sum[:]))
	}
	for _, s := range k.Secrets {
		out = append(out, s.ID+":"+s.Path)
	}
	return out
}

// SecretDirs are the directories of the secrets' paths, each a private in-memory file system.
func (k *KBS) SecretDirs() []string {
	if k == nil {
		return nil
	}
	var dirs []string
	seen := map[string]bool{}
	for _, s := range k.Secrets {
		d := path.Dir(s.Path)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

var errKBSNeedsBuiltin = errors.New("broker secrets (" + EnvSecrets + ") are placed by the built-in runtimes; a PAL fetches secrets inside its enclave itself (docs/enclave-containers.md)")

// checkPrivateDir checks a directory that becomes an empty in-memory file system of the container
// (a secrets directory, an encrypted layer's target): never one the system needs, nor one of the
// kernel's.
func checkPrivateDir(dir string) error {
	for _, reserved := range []string{"/dev", "/proc", "/sys"} {
		if dir == reserved || strings.HasPrefix(dir, reserved+"/") {
			return fmt.Errorf("%s is under %s", dir, reserved)
		}
	}
	switch dir {
	case "/", "/bin", "/boot", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/root",
		"/run", "/sbin", "/srv", "/tmp", "/usr", "/var", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin":
		return fmt.Errorf("%s would be hidden by an in-memory file system", dir)
	}
	return nil
}
