// Package sgx verifies Intel SGX DCAP ECDSA quotes (version 3) and registers an
// attestation.Verifier for attestation.SGX.
//
// Parsing lives in quote.go (bytes to structs, nothing trusted), signature, chain and collateral
// checks are delegated to package dcap. This package must never report Verified for a quote whose
// signatures and PCK chain did not verify to the pinned Intel SGX Root CA, and never invents a
// TCB status: without collateral TCBStatus stays "".
package sgx

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// Verifier verifies SGX ECDSA quotes v3.
type Verifier struct{}

func init() { attestation.RegisterVerifier(Verifier{}) }

// TEE implements attestation.Verifier.
func (Verifier) TEE() attestation.TEE { return attestation.SGX }

// Match recognises a quote v3 header with TEE type SGX and an ECDSA P-256 attestation key.
func (Verifier) Match(evidence []byte) bool {
	if len(evidence) < abi.HeaderSize {
		return false
	}
	return binary.LittleEndian.Uint16(evidence[0:]) == QuoteVersion &&
		binary.LittleEndian.Uint16(evidence[2:]) == abi.AttestationKeyTypeECDSAP256 &&
		binary.LittleEndian.Uint32(evidence[4:]) == abi.TEETypeSGX
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
	out, err := dcap.Verify(ctx, &dcap.Quote{Header: q.Header, Signed: q.Signed, Signature: q.Signature}, opts)
	if err != nil {
		return nil, fmt.Errorf("verify SGX quote: %w", err)
	}
	r := q.Report
	prod, svn := uint64(r.ISVProdID), uint64(r.ISVSVN)
	res := &attestation.Result{
		TEE:      attestation.SGX,
		Verified: true,
		Measurements: map[string]string{
			"mrenclave": hex.EncodeToString(r.MRENCLAVE[:]),
			"mrsigner":  hex.EncodeToString(r.MRSIGNER[:]),
		},
		ReportData: append([]byte(nil), r.ReportData[:]...),
		Debug:      r.Debug(),
		ProductID:  &prod,
		SVN:        &svn,
		Signer:     hex.EncodeToString(r.MRSIGNER[:]),
		Details:    out.Details,
	}
	res.Details["attributes"] = hex.EncodeToString(r.Attributes[:])
	res.Details["miscselect"] = hex.EncodeToString(r.MiscSelect[:])
	res.Details["cpusvn_report"] = hex.EncodeToString(r.CPUSVN[:])
	res.Details["isv_ext_prod_id"] = hex.EncodeToString(r.ISVExtProdID[:])
	res.Details["isv_family_id"] = hex.EncodeToString(r.ISVFamilyID[:])
	res.Details["config_id"] = hex.EncodeToString(r.ConfigID[:])
	res.Details["config_svn"] = strconv.Itoa(int(r.ConfigSVN))
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
