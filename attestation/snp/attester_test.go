package snp

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// fakeSNPTSM is go-configfs-tsm's fake report subsystem answering as the sev_guest provider with
// the real sample report (only for the sample's REPORT_DATA) and a certificate table holding its VCEK.
func fakeSNPTSM(provider string, report, auxblob []byte) *faketsm.Client {
	sub := faketsm.Report611(0)
	fallback := sub.ReadAttr
	sub.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte(provider + "\n"), nil
		case "auxblob":
			return auxblob, nil
		case "outblob":
			// A real provider signs whatever inblob holds; the fake can only replay the sample,
			// so a request for other data gets a report that does not carry it.
			return report, nil
		}
		return fallback(e, attr)
	}
	sub.Random = rand.Reader
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestAttesterConfigfsTSM(t *testing.T) {
	s := loadSample(t)
	table := MarshalCertTable([]CertEntry{{GUID: guidVCEK, Data: s.vcekDER}})
	var rd [64]byte
	copy(rd[:], s.report[0x50:0x90])

	a := &Attester{tsm: fakeSNPTSM("sev_guest", s.report, table)}
	if err := a.Available(); err != nil {
		t.Fatalf("Available: %v", err)
	}
	ev, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev[:ReportSize], s.report) || !bytes.Equal(ev[ReportSize:], table) {
		t.Fatal("evidence is not outblob followed by auxblob")
	}
	// The certificate table travels with the report: no collateral needed.
	res, err := attestation.Verify(context.Background(), ev, attestation.Options{Now: sampleTime})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.ReportData, rd[:]) {
		t.Errorf("report data %x", res.ReportData)
	}

	var other [64]byte
	other[0] = 9
	if _, err := a.Evidence(context.Background(), other); err == nil || !strings.Contains(err.Error(), "REPORT_DATA") {
		t.Errorf("report for other data accepted: %v", err)
	}

	notSNP := &Attester{tsm: fakeSNPTSM("tdx_guest", s.report, nil)}
	err = notSNP.Available()
	if err == nil || !strings.Contains(err.Error(), SevGuestDevice) || !strings.Contains(err.Error(), "tdx_guest") {
		t.Errorf("Available with a TDX provider: %v", err)
	}
	if _, err := notSNP.Evidence(context.Background(), rd); err == nil {
		t.Error("evidence from a non-SNP provider")
	}
}

// TestAttesterHardware runs only inside an SEV-SNP guest.
func TestAttesterHardware(t *testing.T) {
	a := &Attester{}
	if err := a.Available(); err != nil {
		t.Skipf("needs an SEV-SNP guest (%s or configfs-tsm %s): %v", SevGuestDevice, TSMReportDir, err)
	}
	var rd [64]byte
	copy(rd[:], "inclavare snp hardware test")
	ev, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseEvidence(ev, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.Report.GetReportData(), rd[:]) {
		t.Error("report data not bound")
	}
	if len(parsed.Certs) > 0 {
		if _, err := (&Verifier{}).Verify(context.Background(), ev, attestation.Options{}); err != nil {
			t.Errorf("verify own evidence: %v", err)
		}
	}
}
