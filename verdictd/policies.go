package verdictd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
	"github.com/inclavare-containers/inclavare-go/kbs"
)

// maxPoliciesSize bounds a --policy file.
const maxPoliciesSize = 4 << 20

// Policies decide which attested TEE may receive which resource. The file is
//
//	{"default": <policy>, "resources": {"<repository>/<type>/<tag>": <policy>}}
//
// each <policy> in attestation/policy's format, the wrapper decoded by internal/strictjson. A
// resource's own policy replaces the default (it does not add to it); a resource with neither is
// never released.
type Policies struct {
	Default   *policy.Policy
	Resources map[string]*policy.Policy
	// ID is "sha256:<hex>" of the file, named in tokens as the appraisal policy.
	ID string
}

// LoadPolicies reads and parses a policies file.
func LoadPolicies(path string) (*Policies, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPoliciesSize+1))
	if err != nil {
		return nil, fmt.Errorf("load policies %s: %w", path, err)
	}
	p, err := ParsePolicies(data)
	if err != nil {
		return nil, fmt.Errorf("load policies %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicies decodes and checks a policies document. One that can release nothing (no default
// and no resource) is an error: it is surely a mistake.
func ParsePolicies(data []byte) (*Policies, error) {
	if len(data) > maxPoliciesSize {
		return nil, fmt.Errorf("policies: larger than %d bytes", maxPoliciesSize)
	}
	var doc struct {
		Default   json.RawMessage            `json:"default,omitempty"`
		Resources map[string]json.RawMessage `json:"resources,omitempty"`
	}
	if err := strictjson.Decode(data, &doc); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	sum := sha256.Sum256(data)
	p := &Policies{Resources: map[string]*policy.Policy{}, ID: "sha256:" + hex.EncodeToString(sum[:])}
	var errs []error
	if len(doc.Default) > 0 {
		d, err := policy.Parse(doc.Default)
		if err != nil {
			errs = append(errs, fmt.Errorf(`"default": %w`, err))
		}
		p.Default = d
	}
	names := make([]string, 0, len(doc.Resources))
	for name := range doc.Resources {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := kbs.CheckResourcePath(name); err != nil {
			errs = append(errs, fmt.Errorf(`"resources": %w`, err))
			continue
		}
		rp, err := policy.Parse(doc.Resources[name])
		if err != nil {
			errs = append(errs, fmt.Errorf(`"resources" %q: %w`, name, err))
			continue
		}
		p.Resources[name] = rp
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	if p.Default == nil && len(p.Resources) == 0 {
		return nil, errors.New(`policies: neither "default" nor "resources": nothing could ever be released`)
	}
	return p, nil
}

// For returns the policy that decides resource path and the rule that chose it ("resources.<path>"
// or "default"), or nil when none does.
func (p *Policies) For(path string) (*policy.Policy, string) {
	if rp, ok := p.Resources[path]; ok {
		return rp, "resources." + path
	}
	if p.Default != nil {
		return p.Default, "default"
	}
	return nil, ""
}
