package enclavehost

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
)

// ManifestPolicy is how create treats <bundle>/enclave-manifest.json: always verified when
// present; required when Require is set or the spec's annotations say so
// (enclavemanifest.AnnotationRequired, which the shim sets on what its carriers converted).
type ManifestPolicy struct {
	// TrustFile is the PEM file of the keys and certificates whose manifests are accepted.
	TrustFile string
	// TrustNamed: the trust file was named explicitly (flag or environment), so it must exist.
	TrustNamed bool
	// Require refuses a bundle without a manifest (--require-manifest).
	Require bool
	// AllowEphemeral accepts manifests signed with an ephemeral key (development only).
	AllowEphemeral bool
}

// Verify reads and verifies the bundle's manifest before anything is measured or created. s
// is the container's enclave settings (nil: an ordinary container). It returns nil, nil when
// the bundle has no manifest and none is required.
func (p ManifestPolicy) Verify(bundle string, spec *specs.Spec, s *enclave.Settings) (*enclavemanifest.Manifest, error) {
	requiredBy := ""
	if p.Require {
		requiredBy = "--require-manifest"
	}
	switch v := spec.Annotations[enclavemanifest.AnnotationRequired]; v {
	case "", "false":
	case "true":
		if requiredBy == "" {
			requiredBy = "annotation " + enclavemanifest.AnnotationRequired
		}
	default:
		return nil, fmt.Errorf("annotation %s=%q: want true or false", enclavemanifest.AnnotationRequired, v)
	}
	path := enclavemanifest.BundlePath(bundle)
	data, err := enclavemanifest.ReadFromBundle(bundle)
	if errors.Is(err, os.ErrNotExist) {
		if requiredBy != "" {
			return nil, fmt.Errorf("an enclave manifest is required (%s), but %s does not exist", requiredBy, path)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	trust, trustNote, err := p.loadTrust()
	if err != nil {
		return nil, err
	}
	m, err := enclavemanifest.Verify(data, trust)
	if err != nil {
		return nil, fmt.Errorf("enclave manifest %s: %w%s", path, err, trustNote)
	}
	if s == nil {
		return nil, fmt.Errorf("enclave manifest %s describes an enclave (%s on %s), but the container has no enclave settings", path, m.Enclave.RuntimePath, m.Enclave.Type)
	}
	logrus.WithFields(logrus.Fields{"key_id": m.Signer.KeyID, "ephemeral": m.Signer.Ephemeral, "measurement": m.Measurement}).Debug("enclave manifest signature verified")
	return m, nil
}

// loadTrust reads the trust file. A missing default file is an empty trust set (every
// manifest signed by a key is then refused, with a note saying why); a named one must exist.
func (p ManifestPolicy) loadTrust() (*enclavemanifest.Trust, string, error) {
	trust, err := enclavemanifest.LoadTrust(p.TrustFile)
	note := ""
	if err != nil {
		if p.TrustNamed || !errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("--manifest-trust: %w", err)
		}
		trust = enclavemanifest.NewTrust()
		note = fmt.Sprintf(" (no trust file: %s does not exist; name one with --manifest-trust)", p.TrustFile)
	}
	trust.AllowEphemeral = p.AllowEphemeral
	return trust, note, nil
}

// MatchManifest compares a verified manifest (nil: none) with what create is about to run: rune's
// own measurement of the workload, the enclave settings and the entrypoint.
func MatchManifest(bundle string, m *enclavemanifest.Manifest, s *enclave.Settings, measurement string, ep enclavemanifest.Entrypoint) error {
	if m == nil {
		return nil
	}
	errs := []error{m.Matches(s, measurement), m.MatchesEntrypoint(ep)}
	var diffs []string
	for _, err := range errs {
		var mm *enclavemanifest.MismatchError
		if errors.As(err, &mm) {
			diffs = append(diffs, mm.Mismatches...)
		} else if err != nil {
			return fmt.Errorf("enclave manifest %s: %w", enclavemanifest.BundlePath(bundle), err)
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("enclave manifest %s: %w", enclavemanifest.BundlePath(bundle), &enclavemanifest.MismatchError{Mismatches: diffs})
	}
	logrus.WithFields(logrus.Fields{"measurement": measurement, "key_id": m.Signer.KeyID}).Debug("enclave manifest matches the workload")
	return nil
}
