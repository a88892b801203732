package abi

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Enclave identity IDs (enclaveIdentity.id).
const (
	QEIdentityIDSGX = "QE"    // SGX quoting enclave
	QEIdentityIDTDX = "TD_QE" // TDX quoting enclave
	QEIdentityIDQVE = "QVE"   // quote verification enclave (not used by this verifier)
)

// QEIdentity is Intel's signed statement of what a genuine quoting enclave looks like.
type QEIdentity struct {
	// Raw is the exact JSON text of the "enclaveIdentity" value: the bytes the signature covers.
	Raw       []byte
	Signature []byte

	ID                      string
	Version                 int
	IssueDate               time.Time
	NextUpdate              time.Time
	TCBEvaluationDataNumber uint32
	MiscSelect              [4]byte
	MiscSelectMask          [4]byte
	Attributes              [16]byte
	AttributesMask          [16]byte
	MRSIGNER                [32]byte
	ISVProdID               uint16
	// TCBLevels are in Intel's order: highest ISVSVN first.
	TCBLevels []ModuleTCBLevel
}

type jsonQEIdentity struct {
	ID                      *string        `json:"id"`
	Version                 *int           `json:"version"`
	IssueDate               *string        `json:"issueDate"`
	NextUpdate              *string        `json:"nextUpdate"`
	TCBEvaluationDataNumber *int64         `json:"tcbEvaluationDataNumber"`
	MiscSelect              *string        `json:"miscselect"`
	MiscSelectMask          *string        `json:"miscselectMask"`
	Attributes              *string        `json:"attributes"`
	AttributesMask          *string        `json:"attributesMask"`
	MRSIGNER                *string        `json:"mrsigner"`
	ISVProdID               *int           `json:"isvprodid"`
	TCBLevels               []jsonTCBLevel `json:"tcbLevels"`
}

// ParseQEIdentity parses an enclave identity document ({"enclaveIdentity":…,"signature":…},
// version 2).
func ParseQEIdentity(raw []byte) (*QEIdentity, error) {
	value, sig, err := decodeEnvelope(raw, "enclaveIdentity")
	if err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	qi, err := parseQEIdentityValue(value)
	if err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	qi.Raw = value
	qi.Signature = sig
	return qi, nil
}

func parseQEIdentityValue(value []byte) (*QEIdentity, error) {
	var j jsonQEIdentity
	if err := json.Unmarshal(value, &j); err != nil {
		return nil, err
	}
	qi := &QEIdentity{}
	if j.Version == nil {
		return nil, errors.New(`missing "version"`)
	}
	if *j.Version != 2 {
		return nil, fmt.Errorf("unsupported version %d (want 2)", *j.Version)
	}
	qi.Version = *j.Version
	if j.ID == nil || *j.ID == "" {
		return nil, errors.New(`missing "id"`)
	}
	qi.ID = *j.ID
	var err error
	if qi.IssueDate, err = timeField(j.IssueDate, "issueDate"); err != nil {
		return nil, err
	}
	if qi.NextUpdate, err = timeField(j.NextUpdate, "nextUpdate"); err != nil {
		return nil, err
	}
	if j.TCBEvaluationDataNumber == nil {
		return nil, errors.New(`missing "tcbEvaluationDataNumber"`)
	}
	if *j.TCBEvaluationDataNumber < 0 || *j.TCBEvaluationDataNumber > 0xffffffff {
		return nil, fmt.Errorf("tcbEvaluationDataNumber %d out of range", *j.TCBEvaluationDataNumber)
	}
	qi.TCBEvaluationDataNumber = uint32(*j.TCBEvaluationDataNumber)
	for _, f := range []struct {
		dst  []byte
		src  *string
		name string
	}{
		{qi.MiscSelect[:], j.MiscSelect, "miscselect"},
		{qi.MiscSelectMask[:], j.MiscSelectMask, "miscselectMask"},
		{qi.Attributes[:], j.Attributes, "attributes"},
		{qi.AttributesMask[:], j.AttributesMask, "attributesMask"},
		{qi.MRSIGNER[:], j.MRSIGNER, "mrsigner"},
	} {
		if err := hexField(f.dst, f.src, f.name); err != nil {
			return nil, err
		}
	}
	if qi.ISVProdID, err = svn16(j.ISVProdID, "isvprodid"); err != nil {
		return nil, err
	}
	if len(j.TCBLevels) == 0 {
		return nil, errors.New("no tcbLevels")
	}
	for i, jl := range j.TCBLevels {
		l, err := parseModuleTCBLevel(jl)
		if err != nil {
			return nil, fmt.Errorf("tcbLevels[%d]: %w", i, err)
		}
		qi.TCBLevels = append(qi.TCBLevels, l)
	}
	return qi, nil
}
