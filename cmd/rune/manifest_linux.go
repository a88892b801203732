package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/manifest"
)

// Environment variables for the manifest flags: containerd-shim-rune-v2 runs rune through
// go-runc, which passes no arguments of its own choosing, so the shim sets these.
const (
	envManifestTrust          = "RUNE_MANIFEST_TRUST"
	envRequireManifest        = "RUNE_REQUIRE_MANIFEST"
	envManifestAllowEphemeral = "RUNE_MANIFEST_ALLOW_EPHEMERAL"
)

// manifestFlags are rune's global flags for enclave manifests (docs/enclave-manifest.md).
var manifestFlags = []cli.Flag{
	cli.StringFlag{
		Name: "manifest-trust", Value: manifest.DefaultTrustFile, EnvVar: envManifestTrust,
		Usage: "PEM file of the public keys and certificates whose enclave manifests create accepts (a missing default file trusts no key)",
	},
	cli.BoolFlag{
		Name: "require-manifest", EnvVar: envRequireManifest,
		Usage: "refuse to create a container whose bundle has no enclave manifest that verifies and matches",
	},
	cli.BoolFlag{
		Name: "manifest-allow-ephemeral", EnvVar: envManifestAllowEphemeral,
		Usage: "accept enclave manifests signed with an ephemeral key (integrity only, not origin: development only)",
	},
}

// manifestPolicy is how create treats <bundle>/enclave-manifest.json: always verified when
// present; required when --require-manifest is given or the spec's annotations say so
// (manifest.AnnotationRequired, which the shim sets on what its carriers converted).
type manifestPolicy struct {
	trustFile string
	// trustNamed: the trust file was named explicitly (flag or environment), so it must exist.
	trustNamed     bool
	require        bool
	allowEphemeral bool
}

func manifestPolicyFrom(c *cli.Context) manifestPolicy {
	return manifestPolicy{
		trustFile:      c.GlobalString("manifest-trust"),
		trustNamed:     c.GlobalIsSet("manifest-trust") || os.Getenv(envManifestTrust) != "",
		require:        c.GlobalBool("require-manifest"),
		allowEphemeral: c.GlobalBool("manifest-allow-ephemeral"),
	}
}

// verify reads and verifies the bundle's manifest before anything is measured or created. s
// is the container's enclave settings (nil: an ordinary container). It returns nil, nil when
// the bundle has no manifest and none is required.
func (p manifestPolicy) verify(bundle string, spec *specs.Spec, s *enclave.Settings) (*manifest.Manifest, error) {
	requiredBy := ""
	if p.require {
		requiredBy = "--require-manifest"
	}
	switch v := spec.Annotations[manifest.AnnotationRequired]; v {
	case "", "false":
	case "true":
		if requiredBy == "" {
			requiredBy = "annotation " + manifest.AnnotationRequired
		}
	default:
		return nil, fmt.Errorf("annotation %s=%q: want true or false", manifest.AnnotationRequired, v)
	}
	path := manifest.BundlePath(bundle)
	data, err := manifest.ReadFromBundle(bundle)
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
	m, err := manifest.Verify(data, trust)
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
func (p manifestPolicy) loadTrust() (*manifest.Trust, string, error) {
	trust, err := manifest.LoadTrust(p.trustFile)
	note := ""
	if err != nil {
		if p.trustNamed || !errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("--manifest-trust: %w", err)
		}
		trust = manifest.NewTrust()
		note = fmt.Sprintf(" (no trust file: %s does not exist; name one with --manifest-trust)", p.trustFile)
	}
	trust.AllowEphemeral = p.allowEphemeral
	return trust, note, nil
}

// matchManifest compares a verified manifest with what create is about to run: rune's own
// measurement of the workload, the enclave settings and the entrypoint.
func matchManifest(bundle string, m *manifest.Manifest, s *enclave.Settings, measurement string, ep manifest.Entrypoint) error {
	if m == nil {
		return nil
	}
	errs := []error{m.Matches(s, measurement), m.MatchesEntrypoint(ep)}
	var diffs []string
	for _, err := range errs {
		var mm *manifest.MismatchError
		if errors.As(err, &mm) {
			diffs = append(diffs, mm.Mismatches...)
		} else if err != nil {
			return fmt.Errorf("enclave manifest %s: %w", manifest.BundlePath(bundle), err)
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("enclave manifest %s: %w", manifest.BundlePath(bundle), &manifest.MismatchError{Mismatches: diffs})
	}
	logrus.WithFields(logrus.Fields{"measurement": measurement, "key_id": m.Signer.KeyID}).Debug("enclave manifest matches the workload")
	return nil
}
