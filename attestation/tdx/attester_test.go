package tdx

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// tdxGuestTSM is a go-configfs-tsm fake report subsystem that answers like the Linux tdx_guest
// provider: outblob is a real TDX quote (the v4 sample) whose REPORTDATA field is replaced by the
// inblob the caller wrote, followed by padding. The quote's signature then no longer verifies,
// which does not matter here: the attester only checks format and binding.
func tdxGuestTSM(t *testing.T, provider string, quote []byte, patchReportData bool) configfsi.Client {
	sub := &faketsm.ReportSubsystem{
		MakeEntry: func() *faketsm.ReportEntry {
			return &faketsm.ReportEntry{InAttrs: map[string]*faketsm.ReportAttributeState{
				"inblob":    {},
				"privlevel": {Value: []byte("0\n")},
			}}
		},
		CheckInAttr: func(e *faketsm.ReportEntry, attr string, contents []byte) error {
			if attr == "inblob" && len(contents) != attestation.ReportDataSize {
				t.Errorf("inblob is %d bytes, want %d", len(contents), attestation.ReportDataSize)
			}
			return nil
		},
		ReadAttr: func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
			switch attr {
			case "provider":
				return []byte(provider + "\n"), nil
			case "outblob":
				out := bytes.Clone(quote)
				if patchReportData {
					copy(out[48+520:48+584], e.InAttrs["inblob"].Value)
				}
				return append(out, make([]byte, 16)...), nil // generator padding
			}
			return nil, os.ErrNotExist
		},
		Random: rand.Reader,
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestAttesterEvidence(t *testing.T) {
	quote := sample(t, quoteC0806F)
	var rd [attestation.ReportDataSize]byte
	copy(rd[:], "nonce from the relying party")

	a := &Attester{Client: tdxGuestTSM(t, "tdx_guest", quote, true)}
	if err := a.Available(); err != nil {
		t.Fatalf("Available with a client: %v", err)
	}
	ev, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatalf("Evidence: %v", err)
	}
	if len(ev) != len(quote) {
		t.Errorf("evidence is %d bytes, want the quote's %d (padding cut off)", len(ev), len(quote))
	}
	q, err := ParseQuote(ev, false)
	if err != nil {
		t.Fatalf("evidence does not parse strictly: %v", err)
	}
	if q.Report.ReportData != rd {
		t.Errorf("REPORTDATA %x, want %x", q.Report.ReportData, rd)
	}

	tests := []struct {
		name   string
		client configfsi.Client
		want   string
	}{
		{"library fake provider", &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": faketsm.Report611(0)}}, `provider is "fake"`},
		{"SEV-SNP provider", tdxGuestTSM(t, "sev_guest", quote, true), `provider is "sev_guest"`},
		{"quote binds other data", tdxGuestTSM(t, "tdx_guest", quote, false), "does not match the requested"},
		{"not a TDX quote", tdxGuestTSM(t, "tdx_guest", sample(t, "sgx/oasis_quote_v3_pck_chain.bin"), false), "parse TDX quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Attester{Client: tc.client}).Evidence(context.Background(), rd)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestAttesterRegisteredAndAvailability(t *testing.T) {
	a, err := attestation.AttesterFor(attestation.TDX)
	if err != nil {
		t.Fatal(err)
	}
	if _, statErr := os.Stat(ReportPath); statErr != nil {
		err := a.Available()
		if err == nil || !strings.Contains(err.Error(), "/sys/kernel/config/tsm/report") {
			t.Fatalf("Available() = %v, want an error naming /sys/kernel/config/tsm/report", err)
		}
		if _, err := a.Evidence(context.Background(), [attestation.ReportDataSize]byte{}); err == nil {
			t.Fatal("Evidence succeeded without configfs-tsm")
		}
		return
	}
	// On a TDX guest: a real quote must verify its signatures and bind our data.
	var rd [attestation.ReportDataSize]byte
	copy(rd[:], "inclavare tdx attester test")
	ev, err := a.Evidence(context.Background(), rd)
	if err != nil {
		t.Skipf("configfs-tsm at %s present but not usable as tdx_guest: %v", ReportPath, err)
	}
	res, err := attestation.Verify(context.Background(), ev, attestation.Options{})
	if err != nil {
		t.Fatalf("verify own quote: %v", err)
	}
	if !bytes.Equal(res.ReportData, rd[:]) {
		t.Fatalf("ReportData %x", res.ReportData)
	}
}
