// Package sim is the software "TEE": SIMULATED, with no confidentiality and no hardware root of
// trust. It exists so that the whole attestation flow (evidence, Enclave-TLS, inclavared, shelter)
// runs and is tested on any machine, and it is labelled as simulated everywhere it appears
// (certificate name, Result.Details["simulated"]). Verifiers accept it only where a policy lists
// "sim" explicitly.
//
// The design mirrors a real TEE's split of trust:
//   - A per-host platform key (ECDSA P-256, like a hardware attestation key) lives with rune at
//     DefaultPlatformKeyPath (0600 in a 0700 directory). Its self-signed certificate "Inclavare
//     sim platform (SIMULATED, NOT A TEE)" is the trust anchor a verifier must be given.
//   - For each enclave, the platform creates an enclave key and signs an endorsement binding
//     {measurement, runtime name, enclave public key, creation time}. Only the enclave key and
//     its endorsement go to the enclave side (EnclaveKey.MarshalBinary); the platform key never
//     does.
//   - Evidence is the endorsement plus a report {64 bytes of report data, digest of the
//     endorsement} signed by the enclave key. The format (see format.go) starts with Magic and is
//     strict CBOR.
//
// The Verifier trusts only certificates passed explicitly (Options.Roots or Verifier.Anchors),
// never a key the evidence carries, and fails closed when it has none. This package must never
// present sim evidence as hardware-backed.
package sim
