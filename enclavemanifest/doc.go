// Package manifest is the signed enclave manifest of a converted ("carrier") image: what the
// containerd shim measured at create (the measurement, the enclave settings, the entrypoint),
// signed with a configured key or by an authenticated signing service, and what rune checks
// before it builds the enclave. docs/enclave-manifest.md is the normative format.
//
// The file `<bundle>/enclave-manifest.json` is an envelope holding the payload bytes and the
// signature side by side, both base64. The signature covers SignatureInput(payload): a fixed
// context string followed by the payload bytes exactly as stored, so nothing is ever
// re-serialized before it is checked and no canonical-JSON rules are needed.
//
// The package is split the usual way: parsing (strict JSON, every structural oddity refused),
// verification (Verify: signature by a trusted key id, version, algorithm), and validation
// against the running container (Manifest.Matches). It must never accept a manifest it cannot
// verify completely: unknown members, unknown versions, unknown algorithms, untrusted or
// ephemeral keys (unless the caller explicitly allows ephemeral ones), trailing data and bad
// signatures are all errors. It must never generate a signing key unless a caller asks for an
// ephemeral one, and then the manifest says so. It never measures anything itself and imports
// no enclave runtime and no HTTP or TLS code (rune links it and stays lean): the caller hands
// it the measurement, and the signing service's client and server live in manifest/signservice.
package enclavemanifest
