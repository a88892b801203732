package enclavetls

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"sort"

	"github.com/fxamacker/cbor/v2"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Certificate extensions of the interoperable RA-TLS format (TCG DICE OIDs).
var (
	// OIDTaggedEvidence is tcg-dice-tagged-evidence: the evidence extension (required).
	OIDTaggedEvidence = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}
	// OIDEndorsementManifest is tcg-dice-endorsement-manifest: endorsements (optional).
	OIDEndorsementManifest = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 2}
)

// Legacy sgx-ra-tls / Enclave-TLS / rats-tls (before 2023) evidence extensions: the raw evidence is
// the extension value, and its report data starts with the hash of the certificate's public key.
var (
	OIDLegacyEPIDReport    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 2}
	OIDLegacyEPIDRootCert  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 3}
	OIDLegacyEPIDLeafCert  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 4}
	OIDLegacyEPIDSignature = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 5}
	OIDLegacySGXECDSAQuote = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 6}
	// sgx-ra-tls (and inclavare's libenclave-tls) carry the quote's collateral beside it in .7 to
	// .10: PCK certificate, PCK signing chain, TCB info, TCB signing chain. rats-tls reused .8 for
	// TDX quotes; which one a .8 holds is decided by its content.
	OIDLegacyPCKCert          = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 7}
	OIDLegacyPCKSignChain     = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 8}
	OIDLegacyTCBInfo          = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 9}
	OIDLegacyTCBSignChain     = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 10}
	OIDLegacyTDXQuote         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 8}
	OIDLegacySGXLocalReport   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 14}
	OIDLegacySNPReport        = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 20}
	OIDLegacySEVReport        = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 22}
	OIDLegacyCSVReport        = asn1.ObjectIdentifier{1, 2, 840, 113741, 1337, 24}
	legacyUnsupportedFormats  = map[string]string{}
	legacyVerifiableEvidences = map[string]attestation.TEE{
		OIDLegacySGXECDSAQuote.String(): attestation.SGX,
		OIDLegacyTDXQuote.String():      attestation.TDX,
		OIDLegacySNPReport.String():     attestation.SNP,
	}
)

func init() {
	for _, o := range []asn1.ObjectIdentifier{OIDLegacyEPIDReport, OIDLegacyEPIDRootCert, OIDLegacyEPIDLeafCert, OIDLegacyEPIDSignature} {
		legacyUnsupportedFormats[o.String()] = "SGX EPID (Intel Attestation Service) evidence: IAS has been retired"
	}
	legacyUnsupportedFormats[OIDLegacySGXLocalReport.String()] = "SGX local-attestation report: verifiable only on the same platform"
	legacyUnsupportedFormats[OIDLegacySEVReport.String()] = "AMD SEV (pre-SNP) report"
	legacyUnsupportedFormats[OIDLegacyCSVReport.String()] = "Hygon CSV report"
}

// CBOR tags that name the evidence format inside the tagged-evidence extension. Intel's are
// registered with IANA; the SNP/SEV/CSV values are the ones rats-tls assigned itself. TagSim is
// this project's own, unregistered value for the simulated TEE: no other implementation accepts it,
// which is right, since sim evidence proves nothing about confidentiality.
const (
	TagIntelQuote      uint64 = 60000 // SGX ECDSA quote v3, SGX/TDX quote v4/v5
	TagIntelReport     uint64 = 60001 // TDX report or SGX report type 2 (not verifiable remotely)
	TagSGXLegacyReport uint64 = 60002 // EREPORT (local attestation only)
	TagSNP             uint64 = 0x1a7504
	TagSEV             uint64 = 0x1a7505
	TagCSV             uint64 = 0x1a7506
	TagSim             uint64 = 0x1a7580
)

// Claim names of the interoperable RA-TLS format, and the Enclave-TLS challenge claim (see the
// package documentation, "Freshness").
const (
	ClaimPublicKeyHash = "pubkey-hash"
	ClaimNonce         = "nonce"
	ClaimChallenge     = "enclave-tls-challenge"
)

// Hash algorithm IDs of the IANA "Named Information Hash Algorithm" registry that a pubkey-hash
// may use.
const (
	HashSHA256 = 1
	HashSHA384 = 7
	HashSHA512 = 8
)

// Limits on what a peer can make a verifier decode.
const (
	maxExtensionSize = 256 << 10
	maxClaims        = 32
)

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
			IndefLength:      cbor.IndefLengthForbidden,
			TagsMd:           cbor.TagsAllowed,
			MaxNestedLevels:  8,
			MaxArrayElements: 64,
			MaxMapPairs:      maxClaims,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// TagFor returns the CBOR tag that names tee's evidence.
func TagFor(tee attestation.TEE) (uint64, error) {
	switch tee {
	case attestation.SGX, attestation.TDX:
		return TagIntelQuote, nil
	case attestation.SNP:
		return TagSNP, nil
	case attestation.Sim:
		return TagSim, nil
	}
	return 0, fmt.Errorf("no Enclave-TLS evidence tag for TEE %q", tee)
}

// teesForTag is the inverse of TagFor: the TEEs whose evidence may travel under tag.
func teesForTag(tag uint64) ([]attestation.TEE, error) {
	switch tag {
	case TagIntelQuote:
		return []attestation.TEE{attestation.SGX, attestation.TDX}, nil
	case TagSNP:
		return []attestation.TEE{attestation.SNP}, nil
	case TagSim:
		return []attestation.TEE{attestation.Sim}, nil
	case TagIntelReport:
		return nil, errors.New("evidence is an Intel TEE report (tag 60001): only quotes can be verified remotely")
	case TagSGXLegacyReport:
		return nil, errors.New("evidence is an SGX local-attestation report (tag 60002): only quotes can be verified remotely")
	case TagSEV:
		return nil, errors.New("evidence is an AMD SEV (pre-SNP) report: not supported")
	case TagCSV:
		return nil, errors.New("evidence is a Hygon CSV report: not supported")
	}
	return nil, fmt.Errorf("unknown evidence tag %d (%#x)", tag, tag)
}

// TaggedEvidence is the content of the tagged-evidence extension:
// #6.<Tag>([ evidence: bstr, claims-buffer: bstr ]).
type TaggedEvidence struct {
	Tag      uint64
	Evidence []byte
	// ClaimsBuffer is the exact CBOR map whose SHA-256 the evidence's report data starts with.
	ClaimsBuffer []byte
}

type wireEvidenceArray struct {
	_        struct{} `cbor:",toarray"`
	Evidence cbor.RawMessage
	Claims   cbor.RawMessage
}

// Marshal encodes the extension value.
func (e *TaggedEvidence) Marshal() ([]byte, error) {
	b, err := encMode.Marshal(cbor.Tag{Number: e.Tag, Content: []any{e.Evidence, e.ClaimsBuffer}})
	if err != nil {
		return nil, fmt.Errorf("encode tagged evidence: %w", err)
	}
	return b, nil
}

// ReportData is what the evidence must bind: SHA-256 of the claims buffer, then zeros.
func (e *TaggedEvidence) ReportData() (rd [attestation.ReportDataSize]byte) {
	h := sha256.Sum256(e.ClaimsBuffer)
	copy(rd[:], h[:])
	return rd
}

// ParseTaggedEvidence decodes the value of the tagged-evidence extension. It checks structure
// only; nothing it returns is trusted.
func ParseTaggedEvidence(b []byte) (*TaggedEvidence, error) {
	if len(b) > maxExtensionSize {
		return nil, fmt.Errorf("tagged evidence is %d bytes, limit %d", len(b), maxExtensionSize)
	}
	var tag cbor.RawTag
	if err := decMode.Unmarshal(b, &tag); err != nil {
		return nil, fmt.Errorf("tagged evidence: %w", err)
	}
	var arr wireEvidenceArray
	if err := decMode.Unmarshal(tag.Content, &arr); err != nil {
		return nil, fmt.Errorf("tagged evidence: want an array of two byte strings: %w", err)
	}
	ev, err := byteString(arr.Evidence, "evidence")
	if err != nil {
		return nil, fmt.Errorf("tagged evidence: %w", err)
	}
	claims, err := byteString(arr.Claims, "claims buffer")
	if err != nil {
		return nil, fmt.Errorf("tagged evidence: %w", err)
	}
	if len(ev) == 0 {
		return nil, errors.New("tagged evidence: empty evidence")
	}
	return &TaggedEvidence{Tag: tag.Number, Evidence: ev, ClaimsBuffer: claims}, nil
}

// byteString decodes a raw CBOR item that must be a definite byte string (not a text string, not
// tagged).
func byteString(raw cbor.RawMessage, what string) ([]byte, error) {
	if len(raw) == 0 || raw[0]>>5 != 2 {
		return nil, fmt.Errorf("%s is not a byte string", what)
	}
	var b []byte
	if err := decMode.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// Claims are the custom claims of the interoperable RA-TLS format: a map of text names to byte
// strings. PublicKeyHash is "pubkey-hash" decoded; Others holds every other claim ("nonce",
// "enclave-tls-challenge", application claims).
type Claims struct {
	HashAlgorithm uint64
	PublicKeyHash []byte
	Others        map[string][]byte
}

// MarshalClaims encodes the claims buffer: {"pubkey-hash": bstr([alg, hash]), name: bstr, …}.
func MarshalClaims(c *Claims) ([]byte, error) {
	if _, err := newHash(c.HashAlgorithm); err != nil {
		return nil, err
	}
	entry, err := encMode.Marshal([]any{c.HashAlgorithm, c.PublicKeyHash})
	if err != nil {
		return nil, fmt.Errorf("encode pubkey-hash: %w", err)
	}
	m := map[string][]byte{ClaimPublicKeyHash: entry}
	for name, v := range c.Others {
		if name == ClaimPublicKeyHash {
			return nil, fmt.Errorf("claim name %q is reserved", name)
		}
		m[name] = v
	}
	if len(m) > maxClaims {
		return nil, fmt.Errorf("%d claims, limit %d", len(m), maxClaims)
	}
	b, err := encMode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode claims: %w", err)
	}
	return b, nil
}

// ParseClaims decodes a claims buffer. "pubkey-hash" must be present, with a supported hash
// algorithm and a hash of that algorithm's size; every claim value must be a byte string.
func ParseClaims(b []byte) (*Claims, error) {
	var raw map[string]cbor.RawMessage
	if err := decMode.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("claims buffer: want a map of text names to byte strings: %w", err)
	}
	c := &Claims{Others: map[string][]byte{}}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := byteString(raw[name], fmt.Sprintf("claim %q", name))
		if err != nil {
			return nil, fmt.Errorf("claims buffer: %w", err)
		}
		if name != ClaimPublicKeyHash {
			c.Others[name] = v
			continue
		}
		var entry []cbor.RawMessage
		if err := decMode.Unmarshal(v, &entry); err != nil || len(entry) != 2 {
			return nil, errors.New("claims buffer: pubkey-hash is not a [hash-alg-id, hash-value] array")
		}
		if err := decMode.Unmarshal(entry[0], &c.HashAlgorithm); err != nil {
			return nil, fmt.Errorf("claims buffer: pubkey-hash algorithm: %w", err)
		}
		h, err := newHash(c.HashAlgorithm)
		if err != nil {
			return nil, fmt.Errorf("claims buffer: %w", err)
		}
		if c.PublicKeyHash, err = byteString(entry[1], "pubkey-hash value"); err != nil {
			return nil, fmt.Errorf("claims buffer: %w", err)
		}
		if len(c.PublicKeyHash) != h.Size() {
			return nil, fmt.Errorf("claims buffer: pubkey-hash is %d bytes, algorithm %d makes %d", len(c.PublicKeyHash), c.HashAlgorithm, h.Size())
		}
	}
	if c.PublicKeyHash == nil {
		return nil, errors.New("claims buffer: no pubkey-hash claim")
	}
	return c, nil
}

func newHash(alg uint64) (hash.Hash, error) {
	switch alg {
	case HashSHA256:
		return sha256.New(), nil
	case HashSHA384:
		return sha512.New384(), nil
	case HashSHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported pubkey-hash algorithm %d (want 1 sha-256, 7 sha-384 or 8 sha-512)", alg)
}

// hashSPKI hashes a SubjectPublicKeyInfo DER with the named algorithm.
func hashSPKI(alg uint64, spki []byte) ([]byte, error) {
	h, err := newHash(alg)
	if err != nil {
		return nil, err
	}
	h.Write(spki)
	return h.Sum(nil), nil
}

// IntelEndorsements are SGX/TDX collateral in the endorsement-manifest extension, in Open
// Enclave's order (oe_sgx_endorsements_fields_t): #6.60000([version, tcb-info, tcb-issuer-chain,
// pck-crl, root-ca-crl, pck-crl-issuer-chain, qe-identity, qe-identity-issuer-chain,
// ? creation-datetime]).
type IntelEndorsements struct {
	Version               uint32
	TCBInfo               []byte
	TCBInfoIssuerChain    []byte
	PCKCRL                []byte
	RootCACRL             []byte
	PCKCRLIssuerChain     []byte
	QEIdentity            []byte
	QEIdentityIssuerChain []byte
	// CreationDateTime is optional.
	CreationDateTime []byte
}

// Marshal encodes the endorsement-manifest extension value.
func (e *IntelEndorsements) Marshal() ([]byte, error) {
	items := []any{e.Version, e.TCBInfo, e.TCBInfoIssuerChain, e.PCKCRL, e.RootCACRL,
		e.PCKCRLIssuerChain, e.QEIdentity, e.QEIdentityIssuerChain}
	if e.CreationDateTime != nil {
		items = append(items, e.CreationDateTime)
	}
	for i := 1; i < len(items); i++ {
		if items[i].([]byte) == nil {
			items[i] = []byte{}
		}
	}
	b, err := encMode.Marshal(cbor.Tag{Number: TagIntelQuote, Content: items})
	if err != nil {
		return nil, fmt.Errorf("encode endorsements: %w", err)
	}
	return b, nil
}

// Collateral returns the non-empty collateral files, without the C string terminators that
// collateral taken from Intel's quote libraries carries, for attestation.Options.PeerCollateral.
func (e *IntelEndorsements) Collateral() [][]byte {
	var out [][]byte
	for _, b := range [][]byte{e.TCBInfo, e.TCBInfoIssuerChain, e.PCKCRL, e.RootCACRL,
		e.PCKCRLIssuerChain, e.QEIdentity, e.QEIdentityIssuerChain} {
		b = bytes.TrimRight(b, "\x00")
		if len(bytes.TrimSpace(b)) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// ParseEndorsements decodes the endorsement-manifest extension. Only Intel endorsements (tag
// 60000) are defined; any other tag is an error.
func ParseEndorsements(b []byte) (*IntelEndorsements, error) {
	if len(b) > maxExtensionSize {
		return nil, fmt.Errorf("endorsements are %d bytes, limit %d", len(b), maxExtensionSize)
	}
	var tag cbor.RawTag
	if err := decMode.Unmarshal(b, &tag); err != nil {
		return nil, fmt.Errorf("endorsements: %w", err)
	}
	if tag.Number != TagIntelQuote {
		return nil, fmt.Errorf("endorsements tagged %d: only Intel endorsements (tag %d) are defined", tag.Number, TagIntelQuote)
	}
	var items []cbor.RawMessage
	if err := decMode.Unmarshal(tag.Content, &items); err != nil {
		return nil, fmt.Errorf("endorsements: want an array: %w", err)
	}
	if len(items) != 8 && len(items) != 9 {
		return nil, fmt.Errorf("endorsements: array of %d entries, want 8 or 9", len(items))
	}
	e := &IntelEndorsements{}
	if err := decMode.Unmarshal(items[0], &e.Version); err != nil || items[0][0]>>5 != 0 {
		return nil, errors.New("endorsements: version is not an unsigned integer")
	}
	fields := []*[]byte{&e.TCBInfo, &e.TCBInfoIssuerChain, &e.PCKCRL, &e.RootCACRL,
		&e.PCKCRLIssuerChain, &e.QEIdentity, &e.QEIdentityIssuerChain, &e.CreationDateTime}
	for i, raw := range items[1:] {
		v, err := byteString(raw, fmt.Sprintf("endorsements entry %d", i+1))
		if err != nil {
			return nil, err
		}
		*fields[i] = v
	}
	return e, nil
}
