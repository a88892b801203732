// Package tdx verifies Intel TDX DCAP ECDSA quotes (version 4, and version 5 with TD report 1.0 or
// 1.5 bodies), registers an attestation.Verifier for attestation.TDX, and provides an
// attestation.Attester that obtains quotes through Linux configfs-tsm.
//
// Parsing lives in quote.go (bytes to structs, nothing trusted), signature, chain and collateral
// checks are delegated to package dcap. This package must never report Verified for a quote whose
// signatures and PCK chain did not verify to the pinned Intel SGX Root CA, and never invents a
// TCB status: without collateral TCBStatus stays "".
package tdx

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/validate"
)

// Verifier verifies TDX ECDSA quotes v4 and v5.
type Verifier struct{}

func init() { attestation.RegisterVerifier(Verifier{}) }

// TEE implements attestation.Verifier.
func (Verifier) TEE() attestation.TEE { return attestation.TDX }

// Match recognises a quote v4/v5 header with TEE type TDX and an ECDSA P-256 attestation key.
func (Verifier) Match(evidence []byte) bool {
	if len(evidence) < abi.HeaderSize {
		return false
	}
	v := binary.LittleEndian.Uint16(evidence[0:])
	return (v == QuoteVersion4 || v == QuoteVersion5) &&
		binary.LittleEndian.Uint16(evidence[2:]) == abi.AttestationKeyTypeECDSAP256 &&
		binary.LittleEndian.Uint32(evidence[4:]) == abi.TEETypeTDX
}

// Verify implements attestation.Verifier.
func (Verifier) Verify(ctx context.Context, evidence []byte, opts attestation.Options) (*attestation.Result, error) {
	q, err := ParseQuote(evidence, opts.AllowTrailingData)
	if err != nil {
		return nil, err
	}
	return VerifyQuote(ctx, q, opts)
}

// VerifyQuote verifies a parsed quote and describes it.
func VerifyQuote(ctx context.Context, q *Quote, opts attestation.Options) (*attestation.Result, error) {
	r := q.Report
	tcb := &validate.TDXTCB{TEETCBSVN: r.TEETCBSVN, MRSIGNERSEAM: r.MRSIGNERSEAM, SEAMAttributes: r.SEAMAttributes}
	if r.Version15 {
		svn2 := r.TEETCBSVN2
		tcb.TEETCBSVN2 = &svn2
	}
	out, err := dcap.Verify(ctx, &dcap.Quote{Header: q.Header, Signed: q.Signed, Signature: q.Signature, TDX: tcb}, opts)
	if err != nil {
		return nil, fmt.Errorf("verify TDX quote: %w", err)
	}
	m := map[string]string{
		"mrtd":          hex.EncodeToString(r.MRTD[:]),
		"mrconfigid":    hex.EncodeToString(r.MRCONFIGID[:]),
		"mrowner":       hex.EncodeToString(r.MROWNER[:]),
		"mrownerconfig": hex.EncodeToString(r.MROWNERCONFIG[:]),
		"mrseam":        hex.EncodeToString(r.MRSEAM[:]),
		"mrsignerseam":  hex.EncodeToString(r.MRSIGNERSEAM[:]),
	}
	for i := range r.RTMR {
		m["rtmr"+strconv.Itoa(i)] = hex.EncodeToString(r.RTMR[i][:])
	}
	if r.Version15 {
		m["mrservicetd"] = hex.EncodeToString(r.MRSERVICETD[:])
	}
	res := &attestation.Result{
		TEE:          attestation.TDX,
		Verified:     true,
		Measurements: m,
		ReportData:   append([]byte(nil), r.ReportData[:]...),
		Debug:        r.Debug(),
		Details:      out.Details,
	}
	res.Details["tee_tcb_svn"] = hex.EncodeToString(r.TEETCBSVN[:])
	res.Details["td_attributes"] = hex.EncodeToString(r.TDAttributes[:])
	res.Details["seam_attributes"] = hex.EncodeToString(r.SEAMAttributes[:])
	res.Details["xfam"] = hex.EncodeToString(r.XFAM[:])
	res.Details["body_type"] = strconv.Itoa(int(q.BodyType))
	if r.Version15 {
		res.Details["tee_tcb_svn2"] = hex.EncodeToString(r.TEETCBSVN2[:])
	}
	if q.Trailing > 0 {
		res.Details["trailing_bytes"] = strconv.Itoa(q.Trailing)
		res.Details["trailing_zero_padding"] = strconv.FormatBool(q.TrailingZero)
	}
	res.Collateral = out.Collateral
	res.ValidUntil = out.ValidUntil
	if out.TCB != nil {
		res.TCBStatus = out.TCB.Status
		res.Advisories = out.TCB.Advisories
	}
	return res, nil
}
