package attestation

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"strings"
)

// Evidence forms Unwrap recognises around a TEE's own bytes, as tools and platforms emit them.
const (
	FormBinary   = "binary"
	FormPEM      = "pem"
	FormHex      = "hex"
	FormBase64   = "base64"
	FormOEReport = "oe-report-header"
)

// maxTextEvidence bounds text forms: decoded evidence with certificate chains is tens of KiB.
const maxTextEvidence = 16 << 20

// Unwrap returns the TEE evidence inside b and the forms it was wrapped in, outermost first
// ("binary" when b is the evidence itself): PEM (any block type but CERTIFICATE, which is an
// RA-TLS certificate, not evidence), hex or base64 text, and the Open Enclave report header around
// an SGX quote (oe_report_header_t: version 1, type 2 "SGX remote", size). A form is taken only when what it yields is evidence a
// registered verifier recognises, so binary evidence is never misread as text. When nothing is
// recognised, Unwrap returns b unchanged and no form.
func Unwrap(b []byte) ([]byte, []string) {
	if raw, forms := unwrapBinary(b); raw != nil {
		return raw, forms
	}
	if len(b) > maxTextEvidence {
		return b, nil
	}
	text := bytes.TrimSpace(b)
	if bytes.HasPrefix(text, []byte("-----BEGIN ")) {
		block, rest := pem.Decode(text)
		if block != nil && block.Type != "CERTIFICATE" && len(bytes.TrimSpace(rest)) == 0 {
			if raw, forms := unwrapBinary(block.Bytes); raw != nil {
				return raw, append([]string{FormPEM}, forms[1:]...)
			}
		}
		return b, nil
	}
	compact := strings.Join(strings.Fields(string(text)), "")
	if compact == "" {
		return b, nil
	}
	if d, err := hex.DecodeString(compact); err == nil {
		if raw, forms := unwrapBinary(d); raw != nil {
			return raw, append([]string{FormHex}, forms[1:]...)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if d, err := enc.Strict().DecodeString(compact); err == nil {
			if raw, forms := unwrapBinary(d); raw != nil {
				return raw, append([]string{FormBase64}, forms[1:]...)
			}
		}
	}
	return b, nil
}

// unwrapBinary recognises binary evidence, bare or behind an Open Enclave header. forms[0] is
// always FormBinary; nil means not recognised.
func unwrapBinary(b []byte) ([]byte, []string) {
	if _, err := Detect(b); err == nil {
		return b, []string{FormBinary}
	}
	// oe_report_header_t: uint32 version (1), uint32 report_type (2: SGX remote), uint64 size.
	if len(b) > 16 && binary.LittleEndian.Uint32(b) == 1 && binary.LittleEndian.Uint32(b[4:]) == 2 &&
		binary.LittleEndian.Uint64(b[8:]) == uint64(len(b)-16) {
		if _, err := Detect(b[16:]); err == nil {
			return b[16:], []string{FormBinary, FormOEReport}
		}
	}
	return nil, nil
}
