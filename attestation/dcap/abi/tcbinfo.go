package abi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TCB info identifiers (tcbInfo.id, version 3 and later).
const (
	TCBInfoIDSGX = "SGX"
	TCBInfoIDTDX = "TDX"
)

// TCBInfo is Intel's signed statement of the TCB levels of one platform model (FMSPC).
type TCBInfo struct {
	// Raw is the exact JSON text of the "tcbInfo" value: the bytes the signature covers.
	Raw []byte
	// Signature is ECDSA P-256 r||s over Raw.
	Signature []byte

	// ID is "SGX" or "TDX"; version 2 TCB info has no id and is SGX.
	ID                      string
	Version                 int
	IssueDate               time.Time
	NextUpdate              time.Time
	FMSPC                   [6]byte
	PCEID                   [2]byte
	TCBType                 int
	TCBEvaluationDataNumber uint32
	// TDXModule and TDXModuleIdentities are present in TDX TCB info only.
	TDXModule           *TDXModule
	TDXModuleIdentities []TDXModuleIdentity
	// TCBLevels are in Intel's order: newest (highest) first.
	TCBLevels []TCBLevel
}

// TCBLevel is one platform TCB level.
type TCBLevel struct {
	SGXComponents [16]uint8
	PCESVN        uint16
	// TDXComponents is nil for SGX TCB info.
	TDXComponents *[16]uint8
	TCBDate       time.Time
	Status        string
	AdvisoryIDs   []string
}

// TDXModule is the expected TDX module signer and attributes (tcbInfo.tdxModule).
type TDXModule struct {
	MRSIGNER       [48]byte
	Attributes     [8]byte
	AttributesMask [8]byte
}

// TDXModuleIdentity is a TDX module series ("TDX_01", …) with its own TCB levels.
type TDXModuleIdentity struct {
	ID string
	TDXModule
	TCBLevels []ModuleTCBLevel
}

// ModuleTCBLevel is a TCB level keyed by ISVSVN (TDX module identities and QE identities).
type ModuleTCBLevel struct {
	ISVSVN      uint16
	TCBDate     time.Time
	Status      string
	AdvisoryIDs []string
}

// signedEnvelope is the outer object Intel PCS serves: the signed value and its signature.
type signedEnvelope struct {
	TCBInfo         json.RawMessage `json:"tcbInfo"`
	EnclaveIdentity json.RawMessage `json:"enclaveIdentity"`
	Signature       *string         `json:"signature"`
}

func decodeEnvelope(raw []byte, key string) (value json.RawMessage, sig []byte, err error) {
	var env signedEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("envelope: %w", err)
	}
	switch key {
	case "tcbInfo":
		value = env.TCBInfo
	case "enclaveIdentity":
		value = env.EnclaveIdentity
	}
	if len(value) == 0 || bytes.Equal(value, []byte("null")) {
		return nil, nil, fmt.Errorf("no %q object", key)
	}
	if env.Signature == nil {
		return nil, nil, errors.New(`no "signature"`)
	}
	sig, err = hex.DecodeString(*env.Signature)
	if err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	if len(sig) != SignatureSize {
		return nil, nil, fmt.Errorf("signature is %d bytes, want %d (P-256 r||s)", len(sig), SignatureSize)
	}
	return value, sig, nil
}

// hexField decodes a fixed-size hex string field.
func hexField(dst []byte, s *string, name string) error {
	if s == nil {
		return fmt.Errorf("missing %q", name)
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s is %d bytes, want %d", name, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

func timeField(s *string, name string) (time.Time, error) {
	if s == nil {
		return time.Time{}, fmt.Errorf("missing %q", name)
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

func svn8(v *int, name string) (uint8, error) {
	if v == nil {
		return 0, fmt.Errorf("missing %q", name)
	}
	if *v < 0 || *v > 0xff {
		return 0, fmt.Errorf("%s %d out of range 0..255", name, *v)
	}
	return uint8(*v), nil
}

func svn16(v *int, name string) (uint16, error) {
	if v == nil {
		return 0, fmt.Errorf("missing %q", name)
	}
	if *v < 0 || *v > 0xffff {
		return 0, fmt.Errorf("%s %d out of range 0..65535", name, *v)
	}
	return uint16(*v), nil
}

type jsonComponent struct {
	SVN *int `json:"svn"`
}

type jsonTCB struct {
	// Version 3.
	SGXComponents []jsonComponent `json:"sgxtcbcomponents"`
	TDXComponents []jsonComponent `json:"tdxtcbcomponents"`
	PCESVN        *int            `json:"pcesvn"`
	// Version 2 spells the components out.
	Comp01 *int `json:"sgxtcbcomp01svn"`
	Comp02 *int `json:"sgxtcbcomp02svn"`
	Comp03 *int `json:"sgxtcbcomp03svn"`
	Comp04 *int `json:"sgxtcbcomp04svn"`
	Comp05 *int `json:"sgxtcbcomp05svn"`
	Comp06 *int `json:"sgxtcbcomp06svn"`
	Comp07 *int `json:"sgxtcbcomp07svn"`
	Comp08 *int `json:"sgxtcbcomp08svn"`
	Comp09 *int `json:"sgxtcbcomp09svn"`
	Comp10 *int `json:"sgxtcbcomp10svn"`
	Comp11 *int `json:"sgxtcbcomp11svn"`
	Comp12 *int `json:"sgxtcbcomp12svn"`
	Comp13 *int `json:"sgxtcbcomp13svn"`
	Comp14 *int `json:"sgxtcbcomp14svn"`
	Comp15 *int `json:"sgxtcbcomp15svn"`
	Comp16 *int `json:"sgxtcbcomp16svn"`
	// Module and enclave identities.
	ISVSVN *int `json:"isvsvn"`
}

func (t *jsonTCB) v2Components() []*int {
	return []*int{t.Comp01, t.Comp02, t.Comp03, t.Comp04, t.Comp05, t.Comp06, t.Comp07, t.Comp08,
		t.Comp09, t.Comp10, t.Comp11, t.Comp12, t.Comp13, t.Comp14, t.Comp15, t.Comp16}
}

type jsonTCBLevel struct {
	TCB         *jsonTCB `json:"tcb"`
	TCBDate     *string  `json:"tcbDate"`
	TCBStatus   *string  `json:"tcbStatus"`
	AdvisoryIDs []string `json:"advisoryIDs"`
}

type jsonTDXModule struct {
	ID             *string        `json:"id"`
	MRSIGNER       *string        `json:"mrsigner"`
	Attributes     *string        `json:"attributes"`
	AttributesMask *string        `json:"attributesMask"`
	TCBLevels      []jsonTCBLevel `json:"tcbLevels"`
}

type jsonTCBInfo struct {
	ID                      *string         `json:"id"`
	Version                 *int            `json:"version"`
	IssueDate               *string         `json:"issueDate"`
	NextUpdate              *string         `json:"nextUpdate"`
	FMSPC                   *string         `json:"fmspc"`
	PCEID                   *string         `json:"pceId"`
	TCBType                 *int            `json:"tcbType"`
	TCBEvaluationDataNumber *int64          `json:"tcbEvaluationDataNumber"`
	TDXModule               *jsonTDXModule  `json:"tdxModule"`
	TDXModuleIdentities     []jsonTDXModule `json:"tdxModuleIdentities"`
	TCBLevels               []jsonTCBLevel  `json:"tcbLevels"`
}

// ParseTCBInfo parses a TCB info document as served by Intel PCS ({"tcbInfo":…,"signature":…}).
// Versions 2 (SGX) and 3 (SGX and TDX) are understood.
func ParseTCBInfo(raw []byte) (*TCBInfo, error) {
	value, sig, err := decodeEnvelope(raw, "tcbInfo")
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	ti, err := parseTCBInfoValue(value)
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	ti.Raw = value
	ti.Signature = sig
	return ti, nil
}

func parseTCBInfoValue(value []byte) (*TCBInfo, error) {
	var j jsonTCBInfo
	if err := json.Unmarshal(value, &j); err != nil {
		return nil, err
	}
	ti := &TCBInfo{}
	if j.Version == nil {
		return nil, errors.New(`missing "version"`)
	}
	ti.Version = *j.Version
	switch ti.Version {
	case 2:
		if j.ID != nil && *j.ID != TCBInfoIDSGX {
			return nil, fmt.Errorf("version 2 TCB info with id %q", *j.ID)
		}
		ti.ID = TCBInfoIDSGX
	case 3:
		if j.ID == nil {
			return nil, errors.New(`missing "id"`)
		}
		if *j.ID != TCBInfoIDSGX && *j.ID != TCBInfoIDTDX {
			return nil, fmt.Errorf("unknown id %q", *j.ID)
		}
		ti.ID = *j.ID
	default:
		return nil, fmt.Errorf("unsupported version %d (want 2 or 3)", ti.Version)
	}
	var err error
	if ti.IssueDate, err = timeField(j.IssueDate, "issueDate"); err != nil {
		return nil, err
	}
	if ti.NextUpdate, err = timeField(j.NextUpdate, "nextUpdate"); err != nil {
		return nil, err
	}
	if err := hexField(ti.FMSPC[:], j.FMSPC, "fmspc"); err != nil {
		return nil, err
	}
	if err := hexField(ti.PCEID[:], j.PCEID, "pceId"); err != nil {
		return nil, err
	}
	if j.TCBType == nil {
		return nil, errors.New(`missing "tcbType"`)
	}
	ti.TCBType = *j.TCBType
	if j.TCBEvaluationDataNumber == nil {
		return nil, errors.New(`missing "tcbEvaluationDataNumber"`)
	}
	if *j.TCBEvaluationDataNumber < 0 || *j.TCBEvaluationDataNumber > 0xffffffff {
		return nil, fmt.Errorf("tcbEvaluationDataNumber %d out of range", *j.TCBEvaluationDataNumber)
	}
	ti.TCBEvaluationDataNumber = uint32(*j.TCBEvaluationDataNumber)

	isTDX := ti.ID == TCBInfoIDTDX
	if !isTDX && (j.TDXModule != nil || j.TDXModuleIdentities != nil) {
		return nil, errors.New("SGX TCB info with TDX module data")
	}
	if isTDX {
		if j.TDXModule == nil {
			return nil, errors.New(`TDX TCB info without "tdxModule"`)
		}
		m, err := parseTDXModule(*j.TDXModule, "tdxModule")
		if err != nil {
			return nil, err
		}
		ti.TDXModule = &m
		for i, jm := range j.TDXModuleIdentities {
			id, err := parseTDXModuleIdentity(jm)
			if err != nil {
				return nil, fmt.Errorf("tdxModuleIdentities[%d]: %w", i, err)
			}
			ti.TDXModuleIdentities = append(ti.TDXModuleIdentities, id)
		}
	}
	if len(j.TCBLevels) == 0 {
		return nil, errors.New("no tcbLevels")
	}
	for i, jl := range j.TCBLevels {
		l, err := parseTCBLevel(jl, ti.Version, isTDX)
		if err != nil {
			return nil, fmt.Errorf("tcbLevels[%d]: %w", i, err)
		}
		ti.TCBLevels = append(ti.TCBLevels, l)
	}
	return ti, nil
}

func parseTCBLevel(j jsonTCBLevel, version int, isTDX bool) (TCBLevel, error) {
	var l TCBLevel
	if j.TCB == nil {
		return l, errors.New(`missing "tcb"`)
	}
	var err error
	if version == 2 {
		for i, c := range j.TCB.v2Components() {
			if l.SGXComponents[i], err = svn8(c, fmt.Sprintf("sgxtcbcomp%02dsvn", i+1)); err != nil {
				return l, err
			}
		}
	} else {
		if err := components(&l.SGXComponents, j.TCB.SGXComponents, "sgxtcbcomponents"); err != nil {
			return l, err
		}
		if isTDX {
			var tdx [16]uint8
			if err := components(&tdx, j.TCB.TDXComponents, "tdxtcbcomponents"); err != nil {
				return l, err
			}
			l.TDXComponents = &tdx
		} else if j.TCB.TDXComponents != nil {
			return l, errors.New("SGX TCB level with tdxtcbcomponents")
		}
	}
	if l.PCESVN, err = svn16(j.TCB.PCESVN, "pcesvn"); err != nil {
		return l, err
	}
	if l.TCBDate, err = timeField(j.TCBDate, "tcbDate"); err != nil {
		return l, err
	}
	if j.TCBStatus == nil || *j.TCBStatus == "" {
		return l, errors.New(`missing "tcbStatus"`)
	}
	l.Status = *j.TCBStatus
	l.AdvisoryIDs = j.AdvisoryIDs
	return l, nil
}

func components(dst *[16]uint8, src []jsonComponent, name string) error {
	if len(src) != len(dst) {
		return fmt.Errorf("%s has %d entries, want %d", name, len(src), len(dst))
	}
	for i, c := range src {
		v, err := svn8(c.SVN, fmt.Sprintf("%s[%d].svn", name, i))
		if err != nil {
			return err
		}
		dst[i] = v
	}
	return nil
}

func parseTDXModule(j jsonTDXModule, name string) (TDXModule, error) {
	var m TDXModule
	if err := hexField(m.MRSIGNER[:], j.MRSIGNER, name+".mrsigner"); err != nil {
		return m, err
	}
	if err := hexField(m.Attributes[:], j.Attributes, name+".attributes"); err != nil {
		return m, err
	}
	if err := hexField(m.AttributesMask[:], j.AttributesMask, name+".attributesMask"); err != nil {
		return m, err
	}
	return m, nil
}

func parseTDXModuleIdentity(j jsonTDXModule) (TDXModuleIdentity, error) {
	var id TDXModuleIdentity
	if j.ID == nil || *j.ID == "" {
		return id, errors.New(`missing "id"`)
	}
	id.ID = strings.ToUpper(*j.ID)
	m, err := parseTDXModule(j, "module identity")
	if err != nil {
		return id, err
	}
	id.TDXModule = m
	if len(j.TCBLevels) == 0 {
		return id, errors.New("no tcbLevels")
	}
	for i, jl := range j.TCBLevels {
		l, err := parseModuleTCBLevel(jl)
		if err != nil {
			return id, fmt.Errorf("tcbLevels[%d]: %w", i, err)
		}
		id.TCBLevels = append(id.TCBLevels, l)
	}
	return id, nil
}

func parseModuleTCBLevel(j jsonTCBLevel) (ModuleTCBLevel, error) {
	var l ModuleTCBLevel
	if j.TCB == nil {
		return l, errors.New(`missing "tcb"`)
	}
	var err error
	if l.ISVSVN, err = svn16(j.TCB.ISVSVN, "isvsvn"); err != nil {
		return l, err
	}
	if l.TCBDate, err = timeField(j.TCBDate, "tcbDate"); err != nil {
		return l, err
	}
	if j.TCBStatus == nil || *j.TCBStatus == "" {
		return l, errors.New(`missing "tcbStatus"`)
	}
	l.Status = *j.TCBStatus
	l.AdvisoryIDs = j.AdvisoryIDs
	return l, nil
}
