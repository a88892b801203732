package main

import (
	"os"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
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
		Name: "manifest-trust", Value: enclavemanifest.DefaultTrustFile, EnvVar: envManifestTrust,
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

// manifestPolicyFrom reads the manifest flags: how create treats <bundle>/enclave-manifest.json.
func manifestPolicyFrom(c *cli.Context) enclavehost.ManifestPolicy {
	return enclavehost.ManifestPolicy{
		TrustFile:      c.GlobalString("manifest-trust"),
		TrustNamed:     c.GlobalIsSet("manifest-trust") || os.Getenv(envManifestTrust) != "",
		Require:        c.GlobalBool("require-manifest"),
		AllowEphemeral: c.GlobalBool("manifest-allow-ephemeral"),
	}
}
