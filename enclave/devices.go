package enclave

import "github.com/inclavare-containers/inclavare-go/attestation/tee"

// The host paths through which hardware TEEs are reached: rune adds the devices of a container's
// TEE to it, and the Kubernetes device plugin advertises and hands them out. This is their one list.
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
	SNPDevices = []string{"/dev/sev-guest"}
)

const (
	// TSMReportDir is Linux's configfs-tsm report interface, which also serves TDX and SNP guests.
	TSMReportDir = "/sys/kernel/config/tsm/report"
	// AESMSocketDir is where the SGX architectural enclave service (aesmd) keeps its socket; PALs
	// that quote through aesmd need it in the container.
	AESMSocketDir = "/var/run/aesmd"
)

// TEEDevices are the device nodes through which an enclave of TEE type t reaches its hardware, in
// order of preference; nil for a TEE without hardware (sim).
func TEEDevices(t tee.TEE) []string {
	switch t {
	case tee.SGX:
		return SGXEnclaveDevices
	case tee.TDX:
		return TDXDevices
	case tee.SNP:
		return SNPDevices
	}
	return nil
}
