package snp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	"github.com/google/go-sev-guest/client"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

const (
	// SevGuestDevice is the legacy SNP guest request device.
	SevGuestDevice = tee.SEVGuestDevice
	// TSMReportDir is the configfs-tsm report directory (Linux 6.7+).
	TSMReportDir = tee.TSMReportDir

	tsmProvider = "sev_guest"
)

// Attester produces SNP evidence inside an SEV-SNP guest: the report, followed by the host's
// certificate table when the host provides one. It prefers configfs-tsm and falls back to
// /dev/sev-guest.
type Attester struct {
	// tsm replaces the Linux configfs client (tests drive go-configfs-tsm's fake through it).
	tsm configfsi.Client
}

// TEE implements attestation.Attester.
func (*Attester) TEE() attestation.TEE { return attestation.SNP }

// tsmClient returns a configfs-tsm client whose provider is sev_guest.
func (a *Attester) tsmClient() (configfsi.Client, error) {
	c := a.tsm
	if c == nil {
		var err error
		if c, err = linuxtsm.MakeClient(); err != nil {
			return nil, fmt.Errorf("configfs-tsm: %w", err)
		}
	}
	r, err := report.Create(c, &report.Request{})
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm: create report entry: %w", err)
	}
	// Writing inblob first keeps the entry's generation moving, which go-configfs-tsm's fake
	// needs before any attribute is readable; the kernel accepts either order.
	var zero [attestation.ReportDataSize]byte
	err = r.WriteOption("inblob", zero[:])
	var provider []byte
	if err == nil {
		provider, err = r.ReadOption("provider")
	}
	derr := r.Destroy()
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm: read provider: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("configfs-tsm: remove report entry: %w", derr)
	}
	if p := strings.TrimSpace(string(provider)); p != tsmProvider {
		return nil, fmt.Errorf("configfs-tsm provider is %q, not %s", p, tsmProvider)
	}
	return c, nil
}

// Available implements attestation.Attester.
func (a *Attester) Available() error {
	tsmErr := func() error { _, err := a.tsmClient(); return err }()
	if tsmErr == nil {
		return nil
	}
	if a.tsm == nil {
		if _, err := os.Stat(SevGuestDevice); err == nil {
			return nil
		}
	}
	return fmt.Errorf("SEV-SNP guest not available: no %s and no usable %s (%v)", SevGuestDevice, TSMReportDir, tsmErr)
}

// Evidence implements attestation.Attester.
func (a *Attester) Evidence(ctx context.Context, reportData [attestation.ReportDataSize]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	if c, tsmErr := a.tsmClient(); tsmErr == nil {
		resp, err := report.Get(c, &report.Request{InBlob: reportData[:], GetAuxBlob: true})
		if err != nil {
			return nil, fmt.Errorf("SNP report via configfs-tsm: %w", err)
		}
		if p := strings.TrimSpace(resp.Provider); p != tsmProvider {
			return nil, fmt.Errorf("SNP report via configfs-tsm: provider changed to %q", p)
		}
		out = append(bytes.Clone(resp.OutBlob), resp.AuxBlob...)
	} else if a.tsm != nil {
		return nil, tsmErr
	} else {
		var err error
		if out, err = deviceEvidence(reportData); err != nil {
			return nil, errors.Join(err, tsmErr)
		}
	}
	// Cheap guard against a confused provider: the report must carry the data asked for.
	if len(out) < ReportSize {
		return nil, fmt.Errorf("SNP report is %d bytes, want at least %d", len(out), ReportSize)
	}
	if !bytes.Equal(out[0x50:0x90], reportData[:]) {
		return nil, errors.New("SNP report does not carry the requested REPORT_DATA")
	}
	return out, nil
}

func deviceEvidence(reportData [64]byte) ([]byte, error) {
	if _, err := os.Stat(SevGuestDevice); err != nil {
		return nil, fmt.Errorf("SNP report: %w", err)
	}
	d, err := client.OpenDevice()
	if err != nil {
		return nil, fmt.Errorf("SNP report: open %s: %w", SevGuestDevice, err)
	}
	defer d.Close()
	rep, certs, err := client.GetRawExtendedReportAtVmpl(d, reportData, 0)
	if err != nil {
		// Hosts that provision no certificates fail the extended request; the plain one still works.
		rep, err = client.GetRawReportAtVmpl(d, reportData, 0)
		if err != nil {
			return nil, fmt.Errorf("SNP report via %s: %w", SevGuestDevice, err)
		}
		certs = nil
	}
	return append(rep, certs...), nil
}
