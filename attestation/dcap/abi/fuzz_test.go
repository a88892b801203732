package abi

import (
	"testing"
)

func FuzzParseTCBInfo(f *testing.F) {
	for _, s := range []string{"sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json", "tdx/gotdx_tcbinfo_tdx_v3_fmspc_90c06f000000.json"} {
		f.Add(sample(f, s))
	}
	f.Add([]byte(v2TCBInfo))
	f.Fuzz(func(t *testing.T, b []byte) {
		ti, err := ParseTCBInfo(b)
		if err != nil {
			return
		}
		if len(ti.Signature) != SignatureSize || len(ti.TCBLevels) == 0 || (ti.ID == TCBInfoIDTDX) != (ti.TDXModule != nil) {
			t.Fatalf("inconsistent TCB info: %+v", ti)
		}
	})
}

func FuzzParseQEIdentity(f *testing.F) {
	for _, s := range []string{"sgx/oasis_qeidentity_qe_v2.json", "tdx/oasis_qeidentity_td_qe_2024-09.json"} {
		f.Add(sample(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		qi, err := ParseQEIdentity(b)
		if err != nil {
			return
		}
		if len(qi.Signature) != SignatureSize || len(qi.TCBLevels) == 0 || qi.ID == "" {
			t.Fatalf("inconsistent QE identity: %+v", qi)
		}
	})
}

func FuzzParsePCKExtension(f *testing.F) {
	der, _ := pckExtensionDER(f)
	f.Add(der)
	f.Add(der[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParsePCKExtension(b)
	})
}

func FuzzParseSignatureData(f *testing.F) {
	for _, s := range quoteSamples {
		f.Add(signatureData(f, s.file, s.sigOffset, s.trailing), uint8(s.layout))
	}
	f.Fuzz(func(t *testing.T, b []byte, layout uint8) {
		sd, err := ParseSignatureData(b, SignatureLayout(layout))
		if err != nil {
			return
		}
		if sd.QEReport == nil || len(sd.QEReportRaw) != EnclaveReportSize {
			t.Fatal("parsed signature data without a QE report")
		}
		_, _ = sd.Certification.PCKChain()
	})
}

func FuzzParseCollateral(f *testing.F) {
	for _, s := range []string{"sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", "sgx/oasis_qeidentity_qe_v2.json", "sgx/oasis_tcb_signing_chain.pem", "tdx/gotdx_pck_crl_platform_2023-06-08.der"} {
		f.Add(sample(f, s))
	}
	f.Add([]byte(`{"tcb_info":"{\"id\":\"SGX\"}","tcb_info_signature":"00","root_ca_crl":"3000","pck_crl_issuer_chain":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseCollateral([][]byte{b})
	})
}
