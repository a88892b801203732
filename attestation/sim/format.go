package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"

	"github.com/fxamacker/cbor/v2"
)

// Wire format. Evidence is Magic followed by one CBOR map:
//
//	{1: endorsement (bstr), 2: endorsement signature (bstr, 64 bytes r||s, platform key),
//	 3: report (bstr), 4: report signature (bstr, 64 bytes r||s, enclave key)}
//
// endorsement = CBOR {1: version 1, 2: platform key ID (SHA-256 of the platform key's SPKI DER),
// 3: measurement (lower-case hex SHA-256), 4: runtime name, 5: enclave public key (PKIX DER),
// 6: created (Unix seconds)}.
// report = CBOR {1: version 1, 2: report data (64 bytes), 3: SHA-256 of the endorsement bytes}.
//
// Signed parts travel as byte strings (as in COSE) so that signatures cover exact bytes, and every
// signature is over SHA-256(context label || bytes) so that a key can never be made to sign one
// kind of message that verifies as another.
const (
	// Magic starts every piece of sim evidence. It makes Match exact and cheap.
	Magic = "INCLSIM\x01"

	formatVersion = 1
	keyIDSize     = sha256.Size
	sigSize       = 64
	// maxEvidenceSize bounds what the parser accepts; real evidence is well under 1 KiB.
	maxEvidenceSize = 16 << 10

	endorsementLabel = "inclavare-sim endorsement v1\x00"
	reportLabel      = "inclavare-sim report v1\x00"
)

type wireEvidence struct {
	Endorsement    []byte `cbor:"1,keyasint"`
	EndorsementSig []byte `cbor:"2,keyasint"`
	Report         []byte `cbor:"3,keyasint"`
	ReportSig      []byte `cbor:"4,keyasint"`
}

// wireSignedEndorsement is how an EnclaveKey file carries its endorsement: the first two fields
// of wireEvidence.
type wireSignedEndorsement struct {
	Endorsement    []byte `cbor:"1,keyasint"`
	EndorsementSig []byte `cbor:"2,keyasint"`
}

type wireEndorsement struct {
	Version       int    `cbor:"1,keyasint"`
	PlatformKeyID []byte `cbor:"2,keyasint"`
	Measurement   string `cbor:"3,keyasint"`
	Runtime       string `cbor:"4,keyasint"`
	EnclaveKey    []byte `cbor:"5,keyasint"`
	Created       int64  `cbor:"6,keyasint"`
}

type wireReport struct {
	Version           int    `cbor:"1,keyasint"`
	ReportData        []byte `cbor:"2,keyasint"`
	EndorsementDigest []byte `cbor:"3,keyasint"`
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	// decMode is strict: no duplicate or unknown keys, no tags, no indefinite lengths.
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			MaxNestedLevels:   4,
			MaxArrayElements:  16,
			MaxMapPairs:       16,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// decodeExact decodes one CBOR item that must span all of b.
func decodeExact(b []byte, v any, what string) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode sim %s: %w", what, err)
	}
	return nil
}

// parseEvidence splits sim evidence into its parts without checking any signature.
func parseEvidence(b []byte, allowTrailing bool) (*wireEvidence, error) {
	if !bytes.HasPrefix(b, []byte(Magic)) {
		return nil, errors.New("parse sim evidence: missing magic")
	}
	if len(b) > maxEvidenceSize {
		return nil, fmt.Errorf("parse sim evidence: %d bytes, limit %d", len(b), maxEvidenceSize)
	}
	body := b[len(Magic):]
	var w wireEvidence
	if allowTrailing {
		if _, err := decMode.UnmarshalFirst(body, &w); err != nil {
			return nil, fmt.Errorf("parse sim evidence: %w", err)
		}
	} else if err := decodeExact(body, &w, "evidence"); err != nil {
		return nil, err
	}
	if len(w.Endorsement) == 0 || len(w.Report) == 0 {
		return nil, errors.New("parse sim evidence: endorsement or report missing")
	}
	if len(w.EndorsementSig) != sigSize || len(w.ReportSig) != sigSize {
		return nil, fmt.Errorf("parse sim evidence: signatures must be %d bytes", sigSize)
	}
	return &w, nil
}

func parseEndorsement(b []byte) (*wireEndorsement, error) {
	var e wireEndorsement
	if err := decodeExact(b, &e, "endorsement"); err != nil {
		return nil, err
	}
	if e.Version != formatVersion {
		return nil, fmt.Errorf("sim endorsement version %d, want %d", e.Version, formatVersion)
	}
	if len(e.PlatformKeyID) != keyIDSize {
		return nil, fmt.Errorf("sim endorsement platform key ID is %d bytes, want %d", len(e.PlatformKeyID), keyIDSize)
	}
	if err := checkMeasurement(e.Measurement); err != nil {
		return nil, fmt.Errorf("sim endorsement: %w", err)
	}
	if err := checkRuntime(e.Runtime); err != nil {
		return nil, fmt.Errorf("sim endorsement: %w", err)
	}
	if len(e.EnclaveKey) == 0 {
		return nil, errors.New("sim endorsement: no enclave key")
	}
	return &e, nil
}

func parseReport(b []byte) (*wireReport, error) {
	var r wireReport
	if err := decodeExact(b, &r, "report"); err != nil {
		return nil, err
	}
	if r.Version != formatVersion {
		return nil, fmt.Errorf("sim report version %d, want %d", r.Version, formatVersion)
	}
	if len(r.ReportData) != 64 {
		return nil, fmt.Errorf("sim report data is %d bytes, want 64", len(r.ReportData))
	}
	if len(r.EndorsementDigest) != sha256.Size {
		return nil, fmt.Errorf("sim report endorsement digest is %d bytes, want %d", len(r.EndorsementDigest), sha256.Size)
	}
	return &r, nil
}

func checkMeasurement(m string) error {
	if len(m) != 2*sha256.Size {
		return fmt.Errorf("measurement must be %d lower-case hex digits, got %d characters", 2*sha256.Size, len(m))
	}
	for _, c := range m {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("measurement %q is not lower-case hex", m)
		}
	}
	return nil
}

func checkRuntime(r string) error {
	if r == "" || len(r) > 256 {
		return fmt.Errorf("runtime name must be 1–256 bytes, got %d", len(r))
	}
	for _, c := range r {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("runtime name %q has control characters", r)
		}
	}
	return nil
}

func digest(label string, msg []byte) []byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write(msg)
	return h.Sum(nil)
}

// sign returns a fixed-size r||s signature: no DER, nothing to re-encode.
func sign(key *ecdsa.PrivateKey, label string, msg []byte) ([]byte, error) {
	r, s, err := ecdsa.Sign(randReader, key, digest(label, msg))
	if err != nil {
		return nil, err
	}
	out := make([]byte, sigSize)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func verifySig(pub *ecdsa.PublicKey, label string, msg, sig []byte) bool {
	if len(sig) != sigSize || pub.Curve != elliptic.P256() {
		return false
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest(label, msg), r, s)
}
