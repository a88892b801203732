// Package tee names the kinds of trusted execution environment, spelled as in ENCLAVE_TYPE, and the
// host paths through which each is reached: the one list of TEE devices, which rune (the devices
// it adds to a container), the device plugin and the attesters read. It is a leaf with no
// imports, so that the runtime side (enclave settings, the agent protocol, the shim) names a TEE
// with the very type package attestation uses (attestation.TEE is this type) without linking
// attestation's verification code and its X.509. It holds names and paths, never code.
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

// The host paths of the hardware TEEs.
var (
	// SGXEnclaveDevices are the SGX enclave device's names, in the order they are looked for: the
	// upstream driver's (Linux ≥ 5.11), then /dev/sgx/* (its udev links and the out-of-tree DCAP
	// driver's names), then the legacy driver's.
	SGXEnclaveDevices = []string{"/dev/sgx_enclave", "/dev/sgx/enclave", "/dev/isgx"}
	// SGXProvisionDevices are the SGX provisioning device's names (quoting enclaves need it).
	SGXProvisionDevices = []string{"/dev/sgx_provision", "/dev/sgx/provision"}
	// TDXDevices are a TD guest's device names.
	TDXDevices = []string{"/dev/tdx_guest", "/dev/tdx-guest"}
	// SNPDevices are an SEV-SNP guest's device names.
	SNPDevices = []string{SEVGuestDevice}
)

const (
	// SEVGuestDevice is the SEV-SNP guest request device.
	SEVGuestDevice = "/dev/sev-guest"
	// TSMReportDir is Linux's configfs-tsm report interface (Linux 6.7+), which serves TDX and SNP
	// guests.
	TSMReportDir = "/sys/kernel/config/tsm/report"
	// AESMSocketDir is where the SGX architectural enclave service (aesmd) keeps its socket; PALs
	// that quote through aesmd need it in the container.
	AESMSocketDir = "/var/run/aesmd"
)

// Devices are the device nodes through which an enclave of TEE type t reaches its hardware, in
// order of preference; nil for a TEE without hardware (sim).
func Devices(t TEE) []string {
	switch t {
	case SGX:
		return SGXEnclaveDevices
	case TDX:
		return TDXDevices
	case SNP:
		return SNPDevices
	}
	return nil
}
