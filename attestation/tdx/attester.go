package tdx

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// ReportPath is where Linux exposes configfs-tsm attestation reports.
var ReportPath = path.Join(configfsi.TsmPrefix, "report")

// tdxProvider is the configfs-tsm provider name of the Linux TDX guest driver.
const tdxProvider = "tdx_guest"

// Attester obtains TDX quotes through Linux configfs-tsm. The zero value uses the real
// /sys/kernel/config/tsm; Client replaces it (tests use go-configfs-tsm's fakes).
type Attester struct {
	Client configfsi.Client
}

func init() { attestation.RegisterAttester(&Attester{}) }

// TEE implements attestation.Attester.
func (*Attester) TEE() attestation.TEE { return attestation.TDX }

// Available reports whether configfs-tsm reports can be requested here.
func (a *Attester) Available() error {
	if a.Client != nil {
		return nil
	}
	info, err := os.Stat(ReportPath)
	if err != nil {
		return fmt.Errorf("TDX attester: configfs-tsm %s not available (no TDX guest, or configfs not mounted): %w", ReportPath, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("TDX attester: %s is not a directory", ReportPath)
	}
	return nil
}

// Evidence asks the TDX module, through configfs-tsm, for a quote whose REPORTDATA is
// reportData, and checks that the quote is a TDX quote binding exactly that data. Padding the
// quote generator may leave after the signature data is cut off.
func (a *Attester) Evidence(ctx context.Context, reportData [attestation.ReportDataSize]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	client := a.Client
	if client == nil {
		if err := a.Available(); err != nil {
			return nil, err
		}
		c, err := linuxtsm.MakeClient()
		if err != nil {
			return nil, fmt.Errorf("TDX attester: %w", err)
		}
		client = c
	}
	resp, err := report.Get(client, &report.Request{InBlob: reportData[:]})
	if err != nil {
		return nil, fmt.Errorf("TDX attester: configfs-tsm report: %w", err)
	}
	if p := strings.TrimSpace(resp.Provider); p != tdxProvider {
		return nil, fmt.Errorf("TDX attester: configfs-tsm provider is %q, want %q", p, tdxProvider)
	}
	q, err := ParseQuote(resp.OutBlob, true)
	if err != nil {
		return nil, fmt.Errorf("TDX attester: %w", err)
	}
	if q.Report.ReportData != reportData {
		return nil, fmt.Errorf("TDX attester: quote REPORTDATA %x does not match the requested %x", q.Report.ReportData, reportData)
	}
	return resp.OutBlob[:len(resp.OutBlob)-q.Trailing], nil
}
