// Package tee names the kinds of trusted execution environment, spelled as in ENCLAVE_TYPE. It is
// a leaf with no imports, so that the runtime side (enclave settings, the agent protocol, the
// shim) names a TEE with the very type package attestation uses (attestation.TEE is this type)
// without linking attestation's verification code and its X.509. It must never grow code.
package tee

// TEE names a kind of trusted execution environment.
type TEE string

const (
	SGX TEE = "intelSgx"
	TDX TEE = "tdx"
	SNP TEE = "snp"
	// Sim is the software TEE: evidence signed by a simulated platform key. It proves nothing about
	// confidentiality and is accepted only where a policy allows it.
	Sim TEE = "sim"
)
