package sgx

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// QuoteVersion is the SGX ECDSA quote version this package understands.
const QuoteVersion = 3

// signedSize is the part of a v3 quote the attestation key signs: header and ISV enclave report.
const signedSize = abi.HeaderSize + abi.EnclaveReportSize

// Quote is a parsed SGX ECDSA quote v3.
type Quote struct {
	Header abi.Header
	// Report is the ISV enclave's report body.
	Report *abi.EnclaveReport
	// Signed is the exact region covered by the quote signature (header and report body).
	Signed    []byte
	Signature *abi.SignatureData
	// Trailing counts bytes after the signature data: zero padding (TrailingZero), accepted by
	// default, or other bytes, accepted only when asked for.
	Trailing     int
	TrailingZero bool
}

// ParseQuote parses an SGX ECDSA-P256 quote v3. Zero bytes after the signature data are buffer
// padding (quote tools write quotes into fixed-size buffers) and are accepted; any other byte after
// it is an error unless allowTrailing.
func ParseQuote(b []byte, allowTrailing bool) (*Quote, error) {
	b = bytes.Clone(b) // the quote keeps slices of its input; do not share the caller's buffer
	h, err := abi.ParseHeader(b)
	if err != nil {
		return nil, fmt.Errorf("parse SGX quote: %w", err)
	}
	if h.Version != QuoteVersion {
		return nil, fmt.Errorf("parse SGX quote: version %d, want %d", h.Version, QuoteVersion)
	}
	if h.AttestationKeyType != abi.AttestationKeyTypeECDSAP256 {
		return nil, fmt.Errorf("parse SGX quote: attestation key type %d, want %d (ECDSA P-256)", h.AttestationKeyType, abi.AttestationKeyTypeECDSAP256)
	}
	if h.TEEType != abi.TEETypeSGX {
		return nil, fmt.Errorf("parse SGX quote: TEE type %#x, want %#x (SGX)", h.TEEType, abi.TEETypeSGX)
	}
	if len(b) < signedSize+4 {
		return nil, fmt.Errorf("parse SGX quote: %d bytes, need at least %d for header, report body and signature length", len(b), signedSize+4)
	}
	report, err := abi.ParseEnclaveReport(b[abi.HeaderSize:signedSize])
	if err != nil {
		return nil, fmt.Errorf("parse SGX quote: %w", err)
	}
	sigLen := uint64(binary.LittleEndian.Uint32(b[signedSize:]))
	start := uint64(signedSize + 4)
	if sigLen > uint64(len(b))-start {
		return nil, fmt.Errorf("parse SGX quote: signature data length %d exceeds the %d bytes left", sigLen, uint64(len(b))-start)
	}
	end := start + sigLen
	trailing := len(b) - int(end)
	zero := dcap.ZeroPadding(b[end:])
	if trailing > 0 && !zero && !allowTrailing {
		return nil, fmt.Errorf("parse SGX quote: %w: %d bytes after the signature data are not zero padding (%s)", dcap.ErrTrailingData, trailing, dcap.TrailingDataHint)
	}
	sd, err := abi.ParseSignatureData(b[start:end], abi.LayoutV3)
	if err != nil {
		return nil, fmt.Errorf("parse SGX quote: %w", err)
	}
	return &Quote{Header: h, Report: report, Signed: b[:signedSize], Signature: sd, Trailing: trailing, TrailingZero: trailing > 0 && zero}, nil
}
