// Package carrier turns an ordinary container into an enclave container at create: a
// "carrier" per enclave runtime, chosen by RUNE_CARRIER in the container's environment
// (`wasm`: builtin:wasm; `native`: builtin:native). For the bundle containerd prepared, it
// decides the enclave settings the carrier stands for, measures the workload exactly as rune
// will (`init-runelet prepare`, rune's own code path), signs an enclave manifest with the
// configured signer, keeps it in a cache keyed by image digest, signer and settings, and
// writes the manifest and the settings into the bundle. rune then verifies the manifest and
// measures the workload again before it creates anything (docs/enclave-manifest.md).
//
// It must never write a manifest the configured signer did not sign, never sign with a
// throwaway key unless the configuration asks for one by name (and then it says so in the
// log), never cache a conversion it cannot tie to an image digest, and never leave a bundle
// half converted: when Convert fails, config.json is as it was and no manifest is there.
package carrier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/manifest"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

const (
	// EnvCarrier in a container's environment selects the carrier. The shim removes it from
	// the environment: it is an instruction to the shim, not input to the workload (and
	// would otherwise be part of the measurement).
	EnvCarrier = "RUNE_CARRIER"
	// AnnotationCarrier records in the bundle's config.json which carrier converted it.
	AnnotationCarrier = "io.inclavare.carrier"
)

// Carrier is one conversion: the enclave runtime a workload is run in.
type Carrier struct {
	Name string
	// RuntimePath is the ENCLAVE_RUNTIME_PATH the carrier stands for. A container that names
	// another runtime itself is refused.
	RuntimePath string
	// DefaultType is the ENCLAVE_TYPE when the container names none.
	DefaultType string
}

// carriers are those this build provides, by name. The built-in runtimes run on the sim TEE
// by default (docs/enclave-containers.md); builtin:wasm also runs in a TD or an SNP guest
// when the container says ENCLAVE_TYPE=tdx or snp.
var carriers = map[string]Carrier{
	"wasm":   {Name: "wasm", RuntimePath: enclave.BuiltinPrefix + "wasm", DefaultType: enclave.TypeSim},
	"native": {Name: "native", RuntimePath: enclave.BuiltinPrefix + "native", DefaultType: enclave.TypeSim},
}

// Names lists the carriers this build provides, sorted.
func Names() []string {
	names := make([]string, 0, len(carriers))
	for n := range carriers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Request is one container to convert.
type Request struct {
	// Bundle is the OCI bundle (config.json, and the rootfs mounted where config.json says).
	Bundle string
	// ContainerID and Namespace identify the container in containerd.
	ContainerID, Namespace string
	// Config is the shim configuration in force for this create.
	Config *config.Config
	// RunePath is the rune binary the shim drives; the runelet that measures is looked for
	// beside it, as rune looks for it beside itself.
	RunePath string
	// ContainerdAddress is containerd's gRPC socket, asked for the container's image when
	// Image is nil. Empty: the image is unknown, and the conversion is not cached.
	ContainerdAddress string
	// Image is the container's image when the caller knows it already.
	Image *manifest.Image
}

// Result says what a conversion did.
type Result struct {
	Carrier     string
	Settings    enclave.Settings
	Measurement string
	Entrypoint  manifest.Entrypoint
	Image       *manifest.Image
	KeyID       string
	Ephemeral   bool
	// Cache is "hit" (the manifest came from the cache: nothing was measured), "miss"
	// (measured, signed and stored) or "off" (measured and signed, not cacheable; CacheNote
	// says why).
	Cache     string
	CacheNote string

	release func()
}

// Release ends the hold on the shim's environment that Convert took for rune (see
// RuneEnvironment); call it after `rune create` returned. It may be called more than once.
func (r *Result) Release() {
	if r != nil && r.release != nil {
		r.release()
		r.release = nil
	}
}

// Convert converts the container of req.Bundle when its environment names a carrier, and
// returns nil, nil when it does not. On success the bundle holds the signed manifest, its
// config.json the enclave settings (as enclave.* annotations, which rune reads) and
// manifest.AnnotationRequired, and the shim's environment holds what rune must be told
// (Result.Release gives it back).
func Convert(ctx context.Context, req Request) (*Result, error) {
	sp, err := readSpec(req.Bundle)
	if err != nil {
		return nil, err
	}
	name, ok, err := requested(sp.spec)
	if err != nil || !ok {
		return nil, err
	}
	c, err := choose(name, req.Config)
	if err != nil {
		return nil, err
	}
	plan, err := c.plan(sp.spec, req.Bundle)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	logger := log.G(ctx).WithFields(logrus.Fields{"id": req.ContainerID, "carrier": c.Name})

	signer, err := newSigner(req.Config.Signing)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	id, err := signer.Identity(ctx)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: signer: %w", c.Name, err)
	}
	if id.Ephemeral {
		logger.WithField("key_id", id.KeyID).Warn("signing the enclave manifest with an ephemeral key (signing.ephemeral = true): it proves only that the manifest is intact, not who converted the image; for development only")
	}

	img := req.Image
	imageNote := ""
	if img == nil {
		if req.ContainerdAddress == "" {
			imageNote = "containerd's address is unknown"
		} else if img, err = LookupImage(ctx, req.ContainerdAddress, req.Namespace, req.ContainerID, sp.spec.Annotations[AnnotationCRIImageName]); err != nil {
			imageNote = err.Error()
			img = nil
		}
	}
	res := &Result{
		Carrier: c.Name, Settings: *plan.settings, Entrypoint: plan.entrypoint, Image: img,
		KeyID: id.KeyID, Ephemeral: id.Ephemeral,
	}
	key := manifest.CacheKey{KeyID: id.KeyID, Enclave: manifest.EnclaveFrom(plan.settings), Entrypoint: plan.entrypoint}
	var cache *manifest.Cache
	switch {
	case id.Ephemeral:
		res.CacheNote = "the signing key is ephemeral"
	case img == nil:
		res.CacheNote = "the image digest is unknown: " + imageNote
	case img.Digest == "":
		res.CacheNote = "the image digest is unknown"
	default:
		key.ImageDigest, key.ImageReference = img.Digest, img.Reference
		if cache, err = manifest.OpenCache(req.Config.Carriers.CacheDir, 0); err != nil {
			res.CacheNote = err.Error()
			cache = nil
		}
	}

	var data []byte
	if cache != nil {
		data, err = cache.Get(key, id)
		switch {
		case err == nil:
			res.Cache = "hit"
		case errors.Is(err, manifest.ErrCacheMiss) && err.Error() != manifest.ErrCacheMiss.Error():
			// A damaged or foreign entry was removed: worth knowing, not a failure.
			logger.WithError(err).Warn("carrier cache entry discarded")
		}
	}
	if data == nil {
		start := time.Now()
		measurement, err := measure(req.RunePath, plan)
		if err != nil {
			return nil, fmt.Errorf("carrier %s: measure %s: %w", c.Name, plan.entrypoint.Path, err)
		}
		m := manifest.Manifest{Measurement: measurement, Enclave: key.Enclave, Entrypoint: plan.entrypoint, Image: img}
		if data, err = manifest.Sign(ctx, m, signer); err != nil {
			return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
		}
		res.Cache = "off"
		if cache != nil {
			res.Cache = "miss"
			if err := cache.Put(key, data); err != nil {
				// The conversion stands; the next container of the image measures again.
				res.Cache, res.CacheNote = "off", err.Error()
			}
		}
		logger.WithField("took", time.Since(start).Round(time.Millisecond)).Debug("workload measured and manifest signed")
	}
	parsed, err := manifest.ParseUnverified(data)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	res.Measurement = parsed.Measurement

	release := holdRuneEnvironment(req.Config)
	if err := sp.convert(req.Bundle, data, plan, c.Name); err != nil {
		release()
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	res.release = release
	fields := logrus.Fields{
		"measurement": res.Measurement, "runtime": res.Settings.RuntimePath, "tee": res.Settings.Type,
		"key_id": res.KeyID, "cache": res.Cache, "entrypoint": res.Entrypoint.Path,
	}
	if img != nil {
		fields["image"], fields["image_digest"] = img.Reference, img.Digest
	}
	if res.CacheNote != "" {
		fields["cache_note"] = res.CacheNote
	}
	logger.WithFields(fields).Info("converted to an enclave container")
	return res, nil
}

// Requested reports whether the container of bundle asks for a carrier (RUNE_CARRIER in its
// environment) and which, without reading anything else: the shim loads its configuration
// for a conversion only when one is asked for.
func Requested(bundle string) (string, bool, error) {
	sp, err := readSpec(bundle)
	if err != nil {
		return "", false, err
	}
	return requested(sp.spec)
}

// requested returns the carrier named by RUNE_CARRIER in spec's environment.
func requested(spec *specs.Spec) (string, bool, error) {
	if spec.Process == nil {
		return "", false, nil
	}
	name, found := "", false
	for _, kv := range spec.Process.Env {
		v, ok := strings.CutPrefix(kv, EnvCarrier+"=")
		if !ok {
			continue
		}
		if found && v != name {
			return "", false, fmt.Errorf("%s is set twice, to %q and %q", EnvCarrier, name, v)
		}
		name, found = v, true
	}
	if found && name == "" {
		return "", false, fmt.Errorf("%s is empty: name a carrier (available: %s)", EnvCarrier, strings.Join(Names(), ", "))
	}
	return name, found, nil
}

// choose returns the carrier name names, if this build has it and the configuration enables it.
func choose(name string, cfg *config.Config) (Carrier, error) {
	c, ok := carriers[name]
	if !ok {
		return Carrier{}, fmt.Errorf("%s=%q: no such carrier in this shim (available: %s)", EnvCarrier, name, strings.Join(Names(), ", "))
	}
	if !slices.Contains(cfg.Carriers.Enabled, name) {
		enabled := "none"
		if len(cfg.Carriers.Enabled) > 0 {
			enabled = strings.Join(cfg.Carriers.Enabled, ", ")
		}
		return Carrier{}, fmt.Errorf("%s=%q: carrier %q is not enabled in the shim configuration (carriers.enabled: %s)", EnvCarrier, name, name, enabled)
	}
	return c, nil
}

// rootfsOf is the host path of spec's root file system, as rune resolves it.
func rootfsOf(bundle string, spec *specs.Spec) (string, error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return "", errors.New("the OCI spec has no root.path")
	}
	p := spec.Root.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(bundle, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("rootfs %s is not a directory", p)
	}
	return p, nil
}
