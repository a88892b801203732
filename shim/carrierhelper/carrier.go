// Package carrierhelper is the carrier helper's side of carriers, linked only into the
// short-lived rune-carrier-helper that the shim runs (package shim/carrierclient is the shim's
// side). It turns an ordinary container into an enclave container at create: a
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
package carrierhelper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

const (
	// EnvCarrier in a container's environment selects the carrier (carrierclient.EnvCarrier).
	EnvCarrier = carrierclient.EnvCarrier
	// AnnotationCarrier records in the bundle's config.json which carrier converted it.
	AnnotationCarrier = "io.inclavare.carrier"
)

// Carrier is one kind of conversion (the table is package carrierclient's, which the shim
// links without this package).
type Carrier = carrierclient.Carrier

// Names lists the carriers this build provides, sorted.
func Names() []string { return carrierclient.Names() }

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
	Image *enclavemanifest.Image
}

// SealResult says what RUNE_CARRIER_SEAL did.
type SealResult struct {
	// KeyID is the key-encryption key the content key is wrapped by.
	KeyID string
	// PlaintextSHA256 is the entrypoint's digest, which the measurement covers.
	PlaintextSHA256 string
}

// Result says what a conversion did.
type Result struct {
	// Sealed is set when the entrypoint was sealed (RUNE_CARRIER_SEAL).
	Sealed      *SealResult
	Carrier     string
	Settings    enclave.Settings
	Measurement string
	Entrypoint  enclavemanifest.Entrypoint
	Image       *enclavemanifest.Image
	KeyID       string
	Ephemeral   bool
	// Cache is "hit" (the manifest came from the cache: nothing was measured), "miss"
	// (measured, signed and stored) or "off" (measured and signed, not cacheable; CacheNote
	// says why).
	Cache     string
	CacheNote string
}

// Convert converts the container of req.Bundle when its environment names a carrier, and
// returns nil, nil when it does not. On success the bundle holds the signed manifest, its
// config.json the enclave settings (as enclave.* annotations, which rune reads) and
// enclavemanifest.AnnotationRequired. What rune must be told besides (the trust file, the
// allowance for ephemeral keys) is the caller's to set: carrierclient.HoldRuneEnvironment.
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
	plan, err := planFor(c, sp.spec, req.Bundle)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	logger := log.G(ctx).WithFields(logrus.Fields{"id": req.ContainerID, "carrier": c.Name})
	var sealedEP *sealedEntrypoint
	seal, err := sealRequested(sp.spec.Process.Env, plan.settings, req.Config.Carriers.KeyProvider)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}

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
	if seal != nil {
		// On every create, cache hit or not: the rootfs is this container's. The measurement
		// is the plaintext's (docs/measurement.md), so a cached manifest still holds.
		start := time.Now()
		s, err := sealEntrypoint(ctx, plan.rootfs, plan.entrypoint.Path, plan.entrypoint.Cwd, req.Config.Carriers.KeyProvider, seal.keyID)
		if err != nil {
			return nil, fmt.Errorf("carrier %s: %s: %w", c.Name, carrierclient.EnvCarrierSeal, err)
		}
		defer s.Rollback() // a no-op after Commit
		res.Sealed = &SealResult{KeyID: seal.keyID, PlaintextSHA256: s.PlaintextSHA256}
		logger.WithFields(logrus.Fields{"seal_key_id": seal.keyID, "plaintext_sha256": s.PlaintextSHA256,
			"size": s.Size, "entrypoint": plan.entrypoint.Path, "took": time.Since(start).Round(time.Millisecond)}).Info("entrypoint sealed for the key broker")
		sealedEP = s
	}
	key := enclavemanifest.CacheKey{KeyID: id.KeyID, Enclave: enclavemanifest.EnclaveFrom(plan.settings), Entrypoint: plan.entrypoint}
	var cache *enclavemanifest.Cache
	switch {
	case id.Ephemeral:
		res.CacheNote = "the signing key is ephemeral"
	case img == nil:
		res.CacheNote = "the image digest is unknown: " + imageNote
	case img.Digest == "":
		res.CacheNote = "the image digest is unknown"
	default:
		key.ImageDigest, key.ImageReference = img.Digest, img.Reference
		if cache, err = enclavemanifest.OpenCache(req.Config.Carriers.CacheDir, 0); err != nil {
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
		case errors.Is(err, enclavemanifest.ErrCacheMiss) && err.Error() != enclavemanifest.ErrCacheMiss.Error():
			// A damaged or foreign entry was removed: worth knowing, not a failure.
			logger.WithError(err).Warn("carrier cache entry discarded")
		}
	}
	if data == nil {
		start := time.Now()
		measurement, err := measure(ctx, req.RunePath, plan)
		if err != nil {
			return nil, fmt.Errorf("carrier %s: measure %s: %w", c.Name, plan.entrypoint.Path, err)
		}
		m := enclavemanifest.Manifest{Measurement: measurement, Enclave: key.Enclave, Entrypoint: plan.entrypoint, Image: img}
		if data, err = enclavemanifest.Sign(ctx, m, signer); err != nil {
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
	parsed, err := enclavemanifest.ParseUnverified(data)
	if err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	res.Measurement = parsed.Measurement

	if err := sp.convert(req.Bundle, data, plan, c.Name); err != nil {
		return nil, fmt.Errorf("carrier %s: %w", c.Name, err)
	}
	if sealedEP != nil {
		sealedEP.Commit()
	}
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

// requested returns the carrier named by RUNE_CARRIER in spec's environment.
func requested(spec *specs.Spec) (string, bool, error) {
	if spec.Process == nil {
		return "", false, nil
	}
	return carrierclient.RequestedIn(spec.Process.Env)
}

// choose returns the carrier name names, if this build has it and the configuration enables it.
func choose(name string, cfg *config.Config) (Carrier, error) { return carrierclient.Choose(name, cfg) }

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
