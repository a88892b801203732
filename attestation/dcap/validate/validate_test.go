package validate_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/validate"
	"github.com/inclavare-containers/inclavare-go/attestation/sgx"
	"github.com/inclavare-containers/inclavare-go/attestation/tdx"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func sample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

// fixture is freshly parsed evidence and collateral, safe to modify in one test case. The inputs
// are real samples; validate assumes they were authenticated, which package verify tests cover.
type fixture struct {
	ti *abi.TCBInfo
	qi *abi.QEIdentity
	p  validate.Platform
}

func load(t *testing.T, quote, tcbInfo, qeIdentity string) *fixture {
	t.Helper()
	raw := sample(t, quote)
	var sd *abi.SignatureData
	var tdxTCB *validate.TDXTCB
	if strings.HasPrefix(quote, "sgx/") {
		q, err := sgx.ParseQuote(raw, false)
		if err != nil {
			t.Fatal(err)
		}
		sd = q.Signature
	} else {
		q, err := tdx.ParseQuote(raw, true)
		if err != nil {
			t.Fatal(err)
		}
		sd = q.Signature
		r := q.Report
		tdxTCB = &validate.TDXTCB{TEETCBSVN: r.TEETCBSVN, MRSIGNERSEAM: r.MRSIGNERSEAM, SEAMAttributes: r.SEAMAttributes}
		if r.Version15 {
			svn2 := r.TEETCBSVN2
			tdxTCB.TEETCBSVN2 = &svn2
		}
	}
	certs, err := sd.Certification.PCKChain()
	if err != nil {
		t.Fatal(err)
	}
	ext, err := abi.PCKExtensionFromCertificate(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	ti, err := abi.ParseTCBInfo(sample(t, tcbInfo))
	if err != nil {
		t.Fatal(err)
	}
	qi, err := abi.ParseQEIdentity(sample(t, qeIdentity))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ti: ti, qi: qi, p: validate.Platform{PCK: ext, QEReport: sd.QEReport, TDX: tdxTCB}}
}

const (
	sgxQuote  = "sgx/oasis_quote_v3_pck_chain.bin"
	sgxTCB    = "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"
	sgxQE     = "sgx/oasis_qeidentity_qe_v2.json"
	tdxQuote  = "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin"
	tdxTrail  = "tdx/oasis_quote_v4_tdx_trailing70.bin"
	tdxTCB    = "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json"
	tdQE2024  = "tdx/oasis_qeidentity_td_qe_2024-09.json"
	oodQuote  = "tdx/oasis_quote_v4_tdx_fmspc_50806F000000_outofdate.bin"
	oodTCB    = "tdx/gotdx_tcbinfo_tdx_v3_fmspc_50806f000000.json"
	tdQE2023  = "tdx/gotdx_qeidentity_td_qe_2023-06.json"
	v5Quote   = "tdx/gotdx_quote_v5.dat"
	v5TCB     = "tdx/gotdx_tcbinfo_tdx_v3_fmspc_90c06f000000.json"
	sgxAdv615 = "INTEL-SA-00615"
	sgxAdv657 = "INTEL-SA-00657"
)

func setQELevelStatus(f *fixture, status string, advisories ...string) {
	for i := range f.qi.TCBLevels {
		if f.p.QEReport.ISVSVN >= f.qi.TCBLevels[i].ISVSVN {
			f.qi.TCBLevels[i].Status = status
			f.qi.TCBLevels[i].AdvisoryIDs = advisories
			return
		}
	}
}

func moduleIdentity(f *fixture, id string) *abi.TDXModuleIdentity {
	for i := range f.ti.TDXModuleIdentities {
		if f.ti.TDXModuleIdentities[i].ID == id {
			return &f.ti.TDXModuleIdentities[i]
		}
	}
	return nil
}

func TestTCB(t *testing.T) {
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	tests := []struct {
		name                 string
		quote, tcb, qe       string
		mutate               func(*fixture)
		wantStatus           string
		wantAdvisories       []string
		wantDate             time.Time
		wantPlatform, wantQE string
		wantModule           string
		errIs                error
		errContains          string
	}{
		{name: "SGX sample", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			wantStatus: validate.SWHardeningNeeded, wantAdvisories: []string{sgxAdv615, sgxAdv657}, wantDate: day("2022-08-10"),
			wantPlatform: validate.SWHardeningNeeded, wantQE: validate.UpToDate},
		{name: "TDX v4 C0806F", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			wantStatus: validate.UpToDate, wantDate: day("2024-03-13"), wantPlatform: validate.UpToDate, wantQE: validate.UpToDate, wantModule: validate.UpToDate},
		{name: "TDX v4 with trailing data, same platform", quote: tdxTrail, tcb: tdxTCB, qe: tdQE2024,
			wantStatus: validate.UpToDate, wantDate: day("2024-03-13"), wantPlatform: validate.UpToDate, wantQE: validate.UpToDate, wantModule: validate.UpToDate},
		{name: "TDX v5 with module identity TDX_01", quote: v5Quote, tcb: v5TCB, qe: tdQE2023,
			wantStatus: validate.UpToDate, wantDate: day("2024-11-13"), wantPlatform: validate.UpToDate, wantQE: validate.UpToDate, wantModule: validate.UpToDate},
		{name: "SPR E4: no TCB level", quote: oodQuote, tcb: oodTCB, qe: tdQE2023, errIs: validate.ErrTCBNotSupported, errContains: "PCESVN 11"},

		{name: "QE OutOfDate degrades SWHardeningNeeded to OutOfDate", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate:     func(f *fixture) { setQELevelStatus(f, validate.OutOfDate, "INTEL-SA-00477", sgxAdv615) },
			wantStatus: validate.OutOfDate, wantAdvisories: []string{sgxAdv615, sgxAdv657, "INTEL-SA-00477"}, wantDate: day("2022-08-10"),
			wantPlatform: validate.SWHardeningNeeded, wantQE: validate.OutOfDate},
		{name: "QE Revoked", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate:     func(f *fixture) { setQELevelStatus(f, validate.Revoked) },
			wantStatus: validate.Revoked, wantDate: day("2024-03-13"), wantPlatform: validate.UpToDate, wantQE: validate.Revoked, wantModule: validate.UpToDate},
		{name: "QE status unknown", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { setQELevelStatus(f, "Fine") }, errContains: `unrecognised TCB status "Fine"`},
		{name: "QE MRSIGNER differs", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.qi.MRSIGNER[0] ^= 1 }, errIs: validate.ErrIdentityMismatch, errContains: "MRSIGNER"},
		{name: "QE ISVPRODID differs", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.qi.ISVProdID = 2 }, errIs: validate.ErrIdentityMismatch, errContains: "ISVPRODID"},
		{name: "QE attributes differ under the mask", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.qi.Attributes[0] ^= 0x02 }, errIs: validate.ErrIdentityMismatch, errContains: "ATTRIBUTES"},
		{name: "QE attributes outside the mask are ignored", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate:     func(f *fixture) { f.p.QEReport.Attributes[15] ^= 0xff },
			wantStatus: validate.SWHardeningNeeded, wantAdvisories: []string{sgxAdv615, sgxAdv657}, wantDate: day("2022-08-10"),
			wantPlatform: validate.SWHardeningNeeded, wantQE: validate.UpToDate},
		{name: "QE MISCSELECT differs", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.qi.MiscSelect[0] = 1 }, errIs: validate.ErrIdentityMismatch, errContains: "MISCSELECT"},
		{name: "QE ISVSVN below every level", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.p.QEReport.ISVSVN = 0 }, errIs: validate.ErrTCBNotSupported, errContains: "QE ISVSVN 0"},
		{name: "SGX QE identity for a TDX quote", quote: tdxQuote, tcb: tdxTCB, qe: sgxQE, errIs: validate.ErrIdentityMismatch, errContains: `"QE", quote needs "TD_QE"`},
		{name: "TD QE identity for an SGX quote", quote: sgxQuote, tcb: sgxTCB, qe: tdQE2024, errIs: validate.ErrIdentityMismatch},
		{name: "TDX TCB info for an SGX quote", quote: sgxQuote, tcb: tdxTCB, qe: sgxQE, errContains: "does not describe SGX"},
		{name: "SGX TCB info for a TDX quote", quote: tdxQuote, tcb: sgxTCB, qe: tdQE2024, errContains: "does not describe TDX"},
		{name: "TCB info for another FMSPC", quote: tdxQuote, tcb: oodTCB, qe: tdQE2024, errContains: "does not match PCK FMSPC"},
		{name: "PCEID differs", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE, mutate: func(f *fixture) { f.ti.PCEID[1] = 1 }, errContains: "PCEID"},
		{name: "unknown tcbType", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE, mutate: func(f *fixture) { f.ti.TCBType = 1 }, errContains: "tcbType 1"},
		{name: "platform status unknown", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.ti.TCBLevels[0].Status = "Whatever" }, errContains: `unrecognised TCB status "Whatever"`},
		{name: "platform Revoked", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate:     func(f *fixture) { f.ti.TCBLevels[0].Status = validate.Revoked },
			wantStatus: validate.Revoked, wantAdvisories: []string{sgxAdv615, sgxAdv657}, wantDate: day("2022-08-10"), wantPlatform: validate.Revoked, wantQE: validate.UpToDate},
		{name: "PCESVN below every level", quote: sgxQuote, tcb: sgxTCB, qe: sgxQE,
			mutate: func(f *fixture) { f.p.PCK.PCESVN = 0 }, errIs: validate.ErrTCBNotSupported},

		{name: "TDX module identity missing", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate: func(f *fixture) { f.ti.TDXModuleIdentities = nil }, errIs: validate.ErrIdentityMismatch, errContains: "TDX_01"},
		{name: "MRSIGNERSEAM differs", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate: func(f *fixture) { f.p.TDX.MRSIGNERSEAM[3] = 1 }, errIs: validate.ErrIdentityMismatch, errContains: "MRSIGNERSEAM"},
		{name: "SEAMATTRIBUTES set", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate: func(f *fixture) { f.p.TDX.SEAMAttributes[7] = 0x80 }, errIs: validate.ErrIdentityMismatch, errContains: "SEAMATTRIBUTES"},
		{name: "TDX module OutOfDate", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate: func(f *fixture) {
				m := moduleIdentity(f, "TDX_01")
				for i := range m.TCBLevels {
					m.TCBLevels[i].Status = validate.OutOfDate
					m.TCBLevels[i].AdvisoryIDs = []string{"INTEL-SA-01036"}
				}
			},
			wantStatus: validate.OutOfDate, wantAdvisories: []string{"INTEL-SA-01036"}, wantDate: day("2024-03-13"),
			wantPlatform: validate.UpToDate, wantQE: validate.UpToDate, wantModule: validate.OutOfDate},
		{name: "TDX module ISVSVN below every level", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate: func(f *fixture) { f.p.TDX.TEETCBSVN[0] = 0 }, errIs: validate.ErrTCBNotSupported, errContains: "TDX module TDX_01 ISVSVN 0"},
		{name: "TDX late microcode SVN below every level", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate: func(f *fixture) { f.p.TDX.TEETCBSVN[2] = 0 }, errIs: validate.ErrTCBNotSupported, errContains: "TEE_TCB_SVN"},
		{name: "TDX 1.0 module (TEE_TCB_SVN[1] = 0) is judged by the platform levels only", quote: tdxQuote, tcb: tdxTCB, qe: tdQE2024,
			mutate:     func(f *fixture) { f.p.TDX.TEETCBSVN[1] = 0; f.ti.TDXModuleIdentities = nil },
			wantStatus: validate.UpToDate, wantDate: day("2024-03-13"), wantPlatform: validate.UpToDate, wantQE: validate.UpToDate},
		{name: "TD report 1.5: relaunch advised", quote: v5Quote, tcb: v5TCB, qe: tdQE2023,
			mutate: func(f *fixture) {
				// The running module (ISVSVN 11) is now out of date, the one TEE_TCB_SVN2 shows (13) is current.
				m := moduleIdentity(f, "TDX_01")
				m.TCBLevels = []abi.ModuleTCBLevel{{ISVSVN: 13, Status: validate.UpToDate}, {ISVSVN: 2, Status: validate.OutOfDate}}
			},
			wantStatus: validate.TDRelaunchAdvised, wantDate: day("2024-11-13"), wantPlatform: validate.UpToDate, wantQE: validate.UpToDate, wantModule: validate.OutOfDate},
		{name: "TD report 1.5: update not yet loaded, no relaunch", quote: v5Quote, tcb: v5TCB, qe: tdQE2023,
			mutate: func(f *fixture) {
				m := moduleIdentity(f, "TDX_01")
				m.TCBLevels = []abi.ModuleTCBLevel{{ISVSVN: 14, Status: validate.UpToDate}, {ISVSVN: 2, Status: validate.OutOfDate}}
			},
			wantStatus: validate.OutOfDate, wantDate: day("2024-11-13"), wantPlatform: validate.UpToDate, wantQE: validate.UpToDate, wantModule: validate.OutOfDate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := load(t, tc.quote, tc.tcb, tc.qe)
			if tc.mutate != nil {
				tc.mutate(f)
			}
			d, err := validate.TCB(f.ti, f.qi, f.p)
			if tc.errIs != nil || tc.errContains != "" {
				if err == nil {
					t.Fatalf("decided %+v, want error", d)
				}
				if tc.errIs != nil && !errors.Is(err, tc.errIs) {
					t.Errorf("error %q is not %v", err, tc.errIs)
				}
				if !strings.Contains(err.Error(), tc.errContains) {
					t.Errorf("error %q does not mention %q", err, tc.errContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != tc.wantStatus || d.PlatformStatus != tc.wantPlatform || d.QEStatus != tc.wantQE || d.ModuleStatus != tc.wantModule {
				t.Errorf("status %q (platform %q, QE %q, module %q), want %q (%q, %q, %q)", d.Status, d.PlatformStatus, d.QEStatus, d.ModuleStatus,
					tc.wantStatus, tc.wantPlatform, tc.wantQE, tc.wantModule)
			}
			if !slices.Equal(d.Advisories, tc.wantAdvisories) {
				t.Errorf("advisories %v, want %v", d.Advisories, tc.wantAdvisories)
			}
			if !d.TCBDate.Equal(tc.wantDate) {
				t.Errorf("TCB date %s, want %s", d.TCBDate, tc.wantDate)
			}
		})
	}
}

func TestTCBNeedsEverything(t *testing.T) {
	f := load(t, sgxQuote, sgxTCB, sgxQE)
	for name, call := range map[string]func() (*validate.Decision, error){
		"no TCB info":    func() (*validate.Decision, error) { return validate.TCB(nil, f.qi, f.p) },
		"no QE identity": func() (*validate.Decision, error) { return validate.TCB(f.ti, nil, f.p) },
		"no PCK": func() (*validate.Decision, error) {
			return validate.TCB(f.ti, f.qi, validate.Platform{QEReport: f.p.QEReport})
		},
		"no QE report": func() (*validate.Decision, error) { return validate.TCB(f.ti, f.qi, validate.Platform{PCK: f.p.PCK}) },
	} {
		if _, err := call(); err == nil {
			t.Errorf("%s: decided", name)
		}
	}
}
