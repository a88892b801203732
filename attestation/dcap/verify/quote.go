package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// ErrQEReportDataBinding is returned when the QE report does not bind the attestation key.
var ErrQEReportDataBinding = errors.New("QE report data does not bind the attestation key and QE auth data")

// QuoteSignatures checks, in trust order, that the PCK key signed the QE report, that the QE
// report binds the attestation key (REPORTDATA = SHA-256(attestation key || QE auth data) || 32
// zero bytes), and that the attestation key signed the quote's signed region.
func QuoteSignatures(signed []byte, sd *abi.SignatureData, pckKey *ecdsa.PublicKey) error {
	if err := QEReportSignature(sd, pckKey); err != nil {
		return err
	}
	return AttestationKeySignature(signed, sd)
}

// QEReportSignature checks that the PCK key signed the QE report. A platform's QE report (which
// binds its attestation key) is the same in all its quotes while that key lives.
func QEReportSignature(sd *abi.SignatureData, pckKey *ecdsa.PublicKey) error {
	if sd == nil || sd.QEReport == nil {
		return errors.New("quote has no QE report")
	}
	if err := ECDSAP256(pckKey, sd.QEReportRaw, sd.QEReportSignature[:]); err != nil {
		return fmt.Errorf("QE report signature by PCK key: %w", err)
	}
	return nil
}

// AttestationKeySignature checks that the QE report binds the attestation key and that the
// attestation key signed the quote's signed region.
func AttestationKeySignature(signed []byte, sd *abi.SignatureData) error {
	if sd == nil || sd.QEReport == nil {
		return errors.New("quote has no QE report")
	}
	h := sha256.New()
	h.Write(sd.AttestationKey[:])
	h.Write(sd.QEAuthData)
	want := make([]byte, 64)
	copy(want, h.Sum(nil))
	if !bytes.Equal(sd.QEReport.ReportData[:], want) {
		return ErrQEReportDataBinding
	}
	attKey, err := AttestationKey(sd.AttestationKey[:])
	if err != nil {
		return err
	}
	if err := ECDSAP256(attKey, signed, sd.Signature[:]); err != nil {
		return fmt.Errorf("quote signature by attestation key: %w", err)
	}
	return nil
}
