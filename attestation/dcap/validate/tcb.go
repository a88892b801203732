package validate

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// ErrTCBNotSupported is returned when no TCB level of the collateral applies to the platform,
// QE or TDX module: Intel does not vouch for it at all.
var ErrTCBNotSupported = errors.New("TCB level not supported")

// ErrIdentityMismatch is returned when the QE or the TDX module is not the one Intel describes.
var ErrIdentityMismatch = errors.New("identity mismatch")

// TDXTCB is what a TD report contributes to TCB evaluation.
type TDXTCB struct {
	TEETCBSVN [16]byte
	// TEETCBSVN2 is set for TD report 1.5 (quote v5 body type 3) only.
	TEETCBSVN2     *[16]byte
	MRSIGNERSEAM   [48]byte
	SEAMAttributes [8]byte
}

// Platform is the verified evidence the TCB decision is about.
type Platform struct {
	// PCK is the SGX extension of the verified PCK certificate.
	PCK *abi.PCKExtension
	// QEReport is the verified QE report.
	QEReport *abi.EnclaveReport
	// TDX is nil for SGX quotes.
	TDX *TDXTCB
}

// Decision is the outcome of TCB evaluation.
type Decision struct {
	// Status is the converged TCB status.
	Status string
	// Advisories are the Intel security advisory IDs of the matched levels, without duplicates.
	Advisories []string
	// TCBDate is the date of the matched platform TCB level.
	TCBDate time.Time
	// PlatformStatus is the matched TCB info level's status (the TDX level for TDX), QEStatus the QE
	// identity level's and ModuleStatus the TDX module identity level's ("" when not applicable).
	PlatformStatus          string
	QEStatus                string
	ModuleStatus            string
	TCBEvaluationDataNumber uint32
}

// TCB evaluates a platform against a TCB info and a QE identity, both already authenticated.
func TCB(ti *abi.TCBInfo, qi *abi.QEIdentity, p Platform) (*Decision, error) {
	if ti == nil || qi == nil || p.PCK == nil || p.QEReport == nil {
		return nil, errors.New("TCB evaluation needs TCB info, QE identity, PCK extension and QE report")
	}
	if err := tcbInfoApplies(ti, p); err != nil {
		return nil, err
	}
	d := &Decision{TCBEvaluationDataNumber: ti.TCBEvaluationDataNumber}

	qeLevel, err := QEIdentity(qi, p.QEReport, p.TDX != nil)
	if err != nil {
		return nil, err
	}
	if d.QEStatus, err = moduleStatus(qeLevel.Status); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}

	var module *abi.ModuleTCBLevel
	if p.TDX != nil {
		if module, err = tdxModule(ti, p.TDX); err != nil {
			return nil, err
		}
	}

	sgxLevel, tdxLevel := matchLevels(ti.TCBLevels, p)
	if sgxLevel == nil {
		return nil, fmt.Errorf("%w: no TCB level of FMSPC %X matches PCK TCB components %v and PCESVN %d", ErrTCBNotSupported, ti.FMSPC, p.PCK.TCBComponents, p.PCK.PCESVN)
	}
	sgxStatus, err := platformStatus(sgxLevel.Status)
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}

	if p.TDX == nil {
		d.PlatformStatus = sgxStatus
		d.TCBDate = sgxLevel.TCBDate
		d.Status = convergeWithModule(sgxStatus, d.QEStatus)
		d.Advisories = union(sgxLevel.AdvisoryIDs, qeLevel.AdvisoryIDs)
		return d, nil
	}

	if tdxLevel == nil {
		return nil, fmt.Errorf("%w: no TCB level of FMSPC %X matches TEE_TCB_SVN %x", ErrTCBNotSupported, ti.FMSPC, p.TDX.TEETCBSVN)
	}
	tdxStatus, err := platformStatus(tdxLevel.Status)
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	d.PlatformStatus = tdxStatus
	d.TCBDate = tdxLevel.TCBDate
	advisories := tdxLevel.AdvisoryIDs
	if module != nil {
		if d.ModuleStatus, err = moduleStatus(module.Status); err != nil {
			return nil, fmt.Errorf("TDX module identity: %w", err)
		}
		tdxStatus = convergeWithModule(tdxStatus, d.ModuleStatus)
		advisories = union(advisories, module.AdvisoryIDs)
	}
	if tdxStatus != Revoked && p.TDX.TEETCBSVN2 != nil {
		if tdxStatus, err = relaunch(ti, p.TDX, sgxStatus, tdxStatus, d.ModuleStatus, d.QEStatus); err != nil {
			return nil, err
		}
	}
	d.Status = convergeWithModule(tdxStatus, d.QEStatus)
	d.Advisories = union(advisories, qeLevel.AdvisoryIDs)
	return d, nil
}

// tcbInfoApplies checks that the TCB info is about this TEE and this platform.
func tcbInfoApplies(ti *abi.TCBInfo, p Platform) error {
	if ti.TCBType != 0 {
		return fmt.Errorf("TCB info: unsupported tcbType %d", ti.TCBType)
	}
	if p.TDX != nil && (ti.ID != abi.TCBInfoIDTDX || ti.Version < 3) {
		return fmt.Errorf("TCB info %s version %d does not describe TDX", ti.ID, ti.Version)
	}
	if p.TDX == nil && ti.ID != abi.TCBInfoIDSGX {
		return fmt.Errorf("TCB info %s does not describe SGX", ti.ID)
	}
	if ti.FMSPC != p.PCK.FMSPC {
		return fmt.Errorf("TCB info FMSPC %X does not match PCK FMSPC %X", ti.FMSPC, p.PCK.FMSPC)
	}
	if ti.PCEID != p.PCK.PCEID {
		return fmt.Errorf("TCB info PCEID %X does not match PCK PCEID %X", ti.PCEID, p.PCK.PCEID)
	}
	return nil
}

// matchLevels walks the levels newest first. The SGX level is the first whose SGX components and
// PCESVN the PCK certificate meets; for TDX the TDX level is the first that also meets the
// TEE_TCB_SVN (bytes 0 and 1 are the TDX module's and are judged by its identity when byte 1 > 0).
func matchLevels(levels []abi.TCBLevel, p Platform) (sgxLevel, tdxLevel *abi.TCBLevel) {
	for i := range levels {
		l := &levels[i]
		if !componentsAtLeast(p.PCK.TCBComponents[:], l.SGXComponents[:]) || p.PCK.PCESVN < l.PCESVN {
			continue
		}
		if p.TDX == nil {
			return l, nil
		}
		if sgxLevel == nil {
			sgxLevel = l
		}
		if l.TDXComponents == nil {
			continue
		}
		start := 0
		if p.TDX.TEETCBSVN[1] > 0 {
			start = 2
		}
		if componentsAtLeast(p.TDX.TEETCBSVN[start:], l.TDXComponents[start:]) {
			return sgxLevel, l
		}
	}
	return sgxLevel, nil
}

func componentsAtLeast(have []byte, want []uint8) bool {
	for i := range want {
		if have[i] < want[i] {
			return false
		}
	}
	return true
}

// tdxModule checks MRSIGNERSEAM and SEAMATTRIBUTES against the TCB info (or the TDX module identity
// for the module series in TEE_TCB_SVN[1]) and returns the matching module TCB level, or nil when
// the module series is 0 (TDX 1.0 modules are judged by the platform levels alone).
func tdxModule(ti *abi.TCBInfo, t *TDXTCB) (*abi.ModuleTCBLevel, error) {
	if ti.TDXModule == nil {
		return nil, errors.New("TDX TCB info has no tdxModule")
	}
	expect := *ti.TDXModule
	var identity *abi.TDXModuleIdentity
	series := t.TEETCBSVN[1]
	if series > 0 {
		id := fmt.Sprintf("TDX_%02X", series)
		for i := range ti.TDXModuleIdentities {
			if ti.TDXModuleIdentities[i].ID == id {
				identity = &ti.TDXModuleIdentities[i]
				break
			}
		}
		if identity == nil {
			return nil, fmt.Errorf("%w: TCB info has no TDX module identity %s for TEE_TCB_SVN[1]=%d", ErrIdentityMismatch, id, series)
		}
		expect = identity.TDXModule
	}
	if !bytes.Equal(t.MRSIGNERSEAM[:], expect.MRSIGNER[:]) {
		return nil, fmt.Errorf("%w: MRSIGNERSEAM %x, TCB info expects %x", ErrIdentityMismatch, t.MRSIGNERSEAM, expect.MRSIGNER)
	}
	for i := range t.SEAMAttributes {
		if t.SEAMAttributes[i]&expect.AttributesMask[i] != expect.Attributes[i] {
			return nil, fmt.Errorf("%w: SEAMATTRIBUTES %x masked with %x differ from %x", ErrIdentityMismatch, t.SEAMAttributes, expect.AttributesMask, expect.Attributes)
		}
	}
	if identity == nil {
		return nil, nil
	}
	isvsvn := uint16(t.TEETCBSVN[0])
	for i := range identity.TCBLevels {
		if isvsvn >= identity.TCBLevels[i].ISVSVN {
			return &identity.TCBLevels[i], nil
		}
	}
	return nil, fmt.Errorf("%w: TDX module %s ISVSVN %d is below every level", ErrTCBNotSupported, identity.ID, isvsvn)
}

// relaunch implements Intel's "TD relaunch advised" rule for TD report 1.5: when only the TDX
// module is out of date and the TD was launched before an update that TEE_TCB_SVN2 shows is now
// in place, relaunching the TD brings it up to date.
func relaunch(ti *abi.TCBInfo, t *TDXTCB, sgxStatus, tdxStatus, module, qe string) (string, error) {
	if qe == OutOfDate || qe == Revoked {
		return tdxStatus, nil
	}
	switch sgxStatus {
	case UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded:
	default:
		return tdxStatus, nil
	}
	if (tdxStatus != OutOfDate && tdxStatus != OutOfDateConfigurationNeeded) || module != OutOfDate {
		return tdxStatus, nil
	}
	latest := ti.TCBLevels[0]
	if latest.TDXComponents == nil {
		return "", errors.New("TDX TCB info level without tdxtcbcomponents")
	}
	svn2 := t.TEETCBSVN2
	var moduleOK bool
	if svn2[1] == 0 {
		moduleOK = svn2[0] >= latest.TDXComponents[0]
	} else {
		id := fmt.Sprintf("TDX_%02X", svn2[1])
		var identity *abi.TDXModuleIdentity
		for i := range ti.TDXModuleIdentities {
			if ti.TDXModuleIdentities[i].ID == id {
				identity = &ti.TDXModuleIdentities[i]
			}
		}
		if identity == nil {
			return "", fmt.Errorf("%w: TCB info has no TDX module identity %s for TEE_TCB_SVN2[1]", ErrIdentityMismatch, id)
		}
		moduleOK = uint16(svn2[0]) >= identity.TCBLevels[0].ISVSVN
	}
	if !moduleOK || svn2[2] < latest.TDXComponents[2] {
		return tdxStatus, nil
	}
	if configurationNeeded(sgxStatus) || configurationNeeded(tdxStatus) {
		return TDRelaunchAdvisedConfigurationNeeded, nil
	}
	return TDRelaunchAdvised, nil
}

// QEIdentity matches a QE report against a QE identity and returns the QE's TCB level. tdx selects
// the TD quoting enclave identity ("TD_QE") instead of the SGX one ("QE").
func QEIdentity(qi *abi.QEIdentity, qe *abi.EnclaveReport, tdx bool) (*abi.ModuleTCBLevel, error) {
	want := abi.QEIdentityIDSGX
	if tdx {
		want = abi.QEIdentityIDTDX
	}
	if qi.ID != want {
		return nil, fmt.Errorf("%w: QE identity is for %q, quote needs %q", ErrIdentityMismatch, qi.ID, want)
	}
	for i := range qe.MiscSelect {
		if qe.MiscSelect[i]&qi.MiscSelectMask[i] != qi.MiscSelect[i] {
			return nil, fmt.Errorf("%w: QE MISCSELECT %x masked with %x differs from %x", ErrIdentityMismatch, qe.MiscSelect, qi.MiscSelectMask, qi.MiscSelect)
		}
	}
	for i := range qe.Attributes {
		if qe.Attributes[i]&qi.AttributesMask[i] != qi.Attributes[i] {
			return nil, fmt.Errorf("%w: QE ATTRIBUTES %x masked with %x differ from %x", ErrIdentityMismatch, qe.Attributes, qi.AttributesMask, qi.Attributes)
		}
	}
	if qe.MRSIGNER != qi.MRSIGNER {
		return nil, fmt.Errorf("%w: QE MRSIGNER %x, identity expects %x", ErrIdentityMismatch, qe.MRSIGNER, qi.MRSIGNER)
	}
	if qe.ISVProdID != qi.ISVProdID {
		return nil, fmt.Errorf("%w: QE ISVPRODID %d, identity expects %d", ErrIdentityMismatch, qe.ISVProdID, qi.ISVProdID)
	}
	for i := range qi.TCBLevels {
		if qe.ISVSVN >= qi.TCBLevels[i].ISVSVN {
			return &qi.TCBLevels[i], nil
		}
	}
	return nil, fmt.Errorf("%w: QE ISVSVN %d is below every QE identity level", ErrTCBNotSupported, qe.ISVSVN)
}

// union concatenates advisory lists without duplicates, keeping first-seen order.
func union(lists ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range lists {
		for _, a := range l {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}
