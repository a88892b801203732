package dcap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/validate"
)

func TestRefuseRevoked(t *testing.T) {
	for _, tc := range []struct {
		status  string
		revoked bool
	}{
		{validate.Revoked, true},
		{validate.UpToDate, false},
		{validate.OutOfDate, false},
		{validate.TDRelaunchAdvised, false},
	} {
		err := refuseRevoked(&validate.Decision{Status: tc.status, PlatformStatus: tc.status})
		if errors.Is(err, ErrRevokedTCB) != tc.revoked {
			t.Errorf("%s: error %v", tc.status, err)
		}
	}
}

func TestVerifyRejectsIncompleteQuote(t *testing.T) {
	if _, err := Verify(context.Background(), &Quote{}, attestation.Options{}); err == nil {
		t.Error("quote without signature data verified")
	}
	q := &Quote{Signature: &abi.SignatureData{Certification: abi.CertificationData{Type: abi.CertDataPPIDCleartext}}}
	if _, err := Verify(context.Background(), q, attestation.Options{}); err == nil || !strings.Contains(err.Error(), "clear-text PPID of 0 bytes, want 36") {
		t.Errorf("error %v, want malformed PPID certification data", err)
	}
	q7 := &Quote{Signature: &abi.SignatureData{Certification: abi.CertificationData{Type: abi.CertDataPlatformManifest}}}
	if _, err := Verify(context.Background(), q7, attestation.Options{}); !errors.Is(err, abi.ErrUnsupportedCertificationData) {
		t.Errorf("error %v, want unsupported certification data", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, q, attestation.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}
