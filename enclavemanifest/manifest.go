package enclavemanifest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

const (
	// Version is the payload format version this package writes and reads.
	Version = 1
	// FileName is the manifest's name in an OCI bundle.
	FileName = "enclave-manifest.json"
	// DefaultTrustFile is the suggested place of the PEM keys and certificates rune trusts
	// for manifests (LoadTrust).
	DefaultTrustFile = "/etc/inclavare-containers/manifest-trust.pem"
	// MaxSize bounds a manifest file (the envelope); MaxPayloadSize bounds the payload in it.
	MaxSize        = 1 << 20
	MaxPayloadSize = 512 << 10
	// AnnotationRequired, set to "true" among an OCI spec's annotations, makes rune refuse to
	// create the container unless its bundle holds a manifest that verifies and matches. The
	// shim sets it on every container a carrier converted, so that a manifest removed from
	// the bundle fails create instead of silently running unverified. It can only make rune
	// stricter: "false" or its absence leaves rune's own policy in force.
	AnnotationRequired = "io.inclavare.enclave-manifest.required"
)

// Sentinel errors, so that callers can branch on the kind of failure (errors.Is).
var (
	// ErrMalformed: the bytes are not a well-formed manifest of a known version.
	ErrMalformed = errors.New("malformed enclave manifest")
	// ErrUnsupportedVersion: the payload declares a format version this package does not read.
	ErrUnsupportedVersion = errors.New("unsupported enclave manifest version")
	// ErrUnsupportedAlgorithm: the signature algorithm is unknown or does not fit the key.
	ErrUnsupportedAlgorithm = errors.New("unsupported signature algorithm")
	// ErrUntrustedKey: the signer's key id is not among the trusted keys.
	ErrUntrustedKey = errors.New("untrusted signing key")
	// ErrEphemeralKey: the manifest was signed with a throwaway key and the caller does not allow that.
	ErrEphemeralKey = errors.New("manifest signed with an ephemeral key")
	// ErrBadSignature: the signature does not verify over the payload.
	ErrBadSignature = errors.New("enclave manifest signature does not verify")
)

// Manifest is the signed payload: what was measured, how the enclave is configured, and who
// signed it. docs/enclave-manifest.md describes each member.
type Manifest struct {
	// Version is the payload format version; Sign sets it.
	Version int `json:"version"`
	// Measurement is the workload's measurement as the enclave runtime computes it: 64
	// lower-case hex digits (docs/measurement.md, docs/measurement-pal.md).
	Measurement string     `json:"measurement"`
	Enclave     Enclave    `json:"enclave"`
	Entrypoint  Entrypoint `json:"entrypoint"`
	// Image names the image the workload came from; optional.
	Image *Image `json:"image,omitempty"`
	// Created is when the manifest was made (UTC); Sign sets it when zero.
	Created time.Time `json:"created"`
	// Signer says which key signed and how; Sign sets it from the Signer's identity.
	Signer SignerInfo `json:"signer"`
}

// Enclave holds the enclave settings (ENCLAVE_* / enclave.* annotations) the measurement was
// made for.
type Enclave struct {
	Type        tee.TEE  `json:"type"`
	RuntimePath string   `json:"runtime_path"`
	Args        []string `json:"args"`
	LogLevel    string   `json:"log_level"`
	RAType      string   `json:"ra_type"`
}

// Entrypoint is the process the measurement covers, as the measurement saw it: the program
// path, argv, the environment (without the ENCLAVE_* variables rune removes) and the working
// directory, exactly as the OCI process lists them.
type Entrypoint struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
}

// Image identifies the image a workload was converted from.
type Image struct {
	Reference string `json:"reference,omitempty"`
	// Digest is an OCI content digest ("sha256:…") of the image manifest.
	Digest string `json:"digest,omitempty"`
}

// SignerInfo names the signing key and algorithm.
type SignerInfo struct {
	// KeyID is "sha256:" and the hex SHA-256 of the key's DER SubjectPublicKeyInfo (KeyID()).
	KeyID string `json:"key_id"`
	// Algorithm is one of AlgECDSAP256SHA256, AlgEd25519, AlgRSAPSSSHA256.
	Algorithm string `json:"algorithm"`
	// Ephemeral marks a throwaway key made for this manifest alone: it proves integrity, not
	// who signed, and Verify refuses it unless Trust.AllowEphemeral.
	Ephemeral bool `json:"ephemeral"`
	// PublicKey is the base64 DER SubjectPublicKeyInfo of an ephemeral key (nobody could trust
	// it by id); it must be absent otherwise.
	PublicKey string `json:"public_key,omitempty"`
}

// EnclaveFrom returns the manifest form of enclave settings.
func EnclaveFrom(s *enclave.Settings) Enclave {
	return Enclave{
		Type:        s.Type,
		RuntimePath: s.RuntimePath,
		Args:        slices.Clone(s.Args),
		LogLevel:    s.LogLevel,
		RAType:      s.RAType,
	}
}

// Settings returns the enclave settings the manifest describes.
func (e Enclave) Settings() *enclave.Settings {
	return &enclave.Settings{
		Type:        e.Type,
		RuntimePath: e.RuntimePath,
		Args:        slices.Clone(e.Args),
		LogLevel:    e.LogLevel,
		RAType:      e.RAType,
	}
}

// normalize makes absent lists empty ones, so that a payload always lists every array.
func (m *Manifest) normalize() {
	for _, l := range []*[]string{&m.Enclave.Args, &m.Entrypoint.Args, &m.Entrypoint.Env} {
		if *l == nil {
			*l = []string{}
		}
	}
}

// validate checks every member on its own (no trust decision): the version, the forms of the
// measurement, digest, key id, algorithm and public key, the enclave settings, and that every
// string is valid UTF-8 (JSON could not carry it otherwise).
func (m *Manifest) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if m.Version != Version {
		add("version %d: %w (this build reads version %d)", m.Version, ErrUnsupportedVersion, Version)
	}
	if !isLowerHex(m.Measurement, 64) {
		add("measurement %q is not 64 lower-case hex digits", clip(m.Measurement))
	}
	if err := m.Enclave.Settings().Validate(); err != nil {
		add("enclave settings: %w", err)
	}
	if m.Entrypoint.Path == "" {
		add("entrypoint.path is empty")
	}
	if m.Entrypoint.Cwd != "" && !path.IsAbs(m.Entrypoint.Cwd) {
		add("entrypoint.cwd %q is not absolute", clip(m.Entrypoint.Cwd))
	}
	if img := m.Image; img != nil {
		if img.Reference == "" && img.Digest == "" {
			add("image has neither reference nor digest (omit it instead)")
		}
		if img.Digest != "" {
			if err := checkDigest(img.Digest); err != nil {
				add("image.digest %q: %v", clip(img.Digest), err)
			}
		}
	}
	if m.Created.IsZero() {
		add("created is missing")
	}
	if err := m.Signer.validate(); err != nil {
		errs = append(errs, err)
	}
	strs := m.strings()
	for _, name := range slices.Sorted(maps.Keys(strs)) {
		if !utf8.ValidString(strs[name]) {
			add("%s is not valid UTF-8 and cannot be represented in a manifest", name)
		}
	}
	return errors.Join(errs...)
}

func (s *SignerInfo) validate() error {
	if !isKeyID(s.KeyID) {
		return fmt.Errorf("signer.key_id %q is not \"sha256:\" and 64 lower-case hex digits", clip(s.KeyID))
	}
	if !knownAlgorithm(s.Algorithm) {
		return fmt.Errorf("signer.algorithm %q: %w (known: %s)", clip(s.Algorithm), ErrUnsupportedAlgorithm, strings.Join(algorithms, ", "))
	}
	if !s.Ephemeral {
		if s.PublicKey != "" {
			return errors.New("signer.public_key is only allowed for an ephemeral key (a trusted key is found by its id)")
		}
		return nil
	}
	if s.PublicKey == "" {
		return errors.New("signer.public_key is required for an ephemeral key")
	}
	_, err := s.ephemeralKey()
	return err
}

// strings lists every string member with a name for error messages.
func (m *Manifest) strings() map[string]string {
	out := map[string]string{
		"measurement": m.Measurement, "enclave.type": string(m.Enclave.Type), "enclave.runtime_path": m.Enclave.RuntimePath,
		"enclave.log_level": m.Enclave.LogLevel, "enclave.ra_type": m.Enclave.RAType,
		"entrypoint.path": m.Entrypoint.Path, "entrypoint.cwd": m.Entrypoint.Cwd,
		"signer.key_id": m.Signer.KeyID, "signer.algorithm": m.Signer.Algorithm,
	}
	for prefix, list := range map[string][]string{"enclave.args": m.Enclave.Args, "entrypoint.args": m.Entrypoint.Args, "entrypoint.env": m.Entrypoint.Env} {
		for i, s := range list {
			out[fmt.Sprintf("%s[%d]", prefix, i)] = s
		}
	}
	if m.Image != nil {
		out["image.reference"], out["image.digest"] = m.Image.Reference, m.Image.Digest
	}
	return out
}

// MismatchError lists every way a manifest differs from the container being created.
type MismatchError struct {
	Mismatches []string
}

func (e *MismatchError) Error() string {
	return "enclave manifest does not match the container: " + strings.Join(e.Mismatches, "; ")
}

// Matches checks the manifest against what rune is about to run: its own measurement of the
// workload and the container's enclave settings. The error (a *MismatchError) names every
// difference, not only the first.
func (m *Manifest) Matches(s *enclave.Settings, measurement string) error {
	var diffs []string
	if m.Measurement != measurement {
		diffs = append(diffs, fmt.Sprintf("measurement: manifest %s, workload %s", m.Measurement, clip(measurement)))
	}
	if s == nil {
		diffs = append(diffs, "the container has no enclave settings, the manifest is for an enclave")
	} else {
		diffs = append(diffs, m.Enclave.diff(EnclaveFrom(s))...)
	}
	if len(diffs) > 0 {
		return &MismatchError{Mismatches: diffs}
	}
	return nil
}

// MatchesEntrypoint checks the manifest's entrypoint against the container's process (for a C
// PAL the measurement covers neither env nor cwd, so this is the only check of those).
func (m *Manifest) MatchesEntrypoint(e Entrypoint) error {
	var diffs []string
	if m.Entrypoint.Path != e.Path {
		diffs = append(diffs, fmt.Sprintf("entrypoint path: manifest %q, container %q", clip(m.Entrypoint.Path), clip(e.Path)))
	}
	if !slices.Equal(m.Entrypoint.Args, e.Args) {
		diffs = append(diffs, fmt.Sprintf("entrypoint args: manifest %q, container %q", m.Entrypoint.Args, e.Args))
	}
	if !slices.Equal(m.Entrypoint.Env, e.Env) {
		// Values are not printed: an environment often carries secrets and errors reach logs.
		diffs = append(diffs, "entrypoint env: "+describeEnvDiff(m.Entrypoint.Env, e.Env))
	}
	if m.Entrypoint.Cwd != e.Cwd {
		diffs = append(diffs, fmt.Sprintf("entrypoint cwd: manifest %q, container %q", clip(m.Entrypoint.Cwd), clip(e.Cwd)))
	}
	if len(diffs) > 0 {
		return &MismatchError{Mismatches: diffs}
	}
	return nil
}

func (e Enclave) diff(o Enclave) []string {
	var d []string
	field := func(name, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s: manifest %q, container %q", name, clip(a), clip(b)))
		}
	}
	field("enclave type", string(e.Type), string(o.Type))
	field("enclave runtime path", e.RuntimePath, o.RuntimePath)
	if !slices.Equal(e.Args, o.Args) {
		d = append(d, fmt.Sprintf("enclave runtime args: manifest %q, container %q", e.Args, o.Args))
	}
	field("enclave log level", e.LogLevel, o.LogLevel)
	field("remote attestation type", e.RAType, o.RAType)
	return d
}

// describeEnvDiff names the variables that differ between two environments, not their values.
func describeEnvDiff(a, b []string) string {
	if len(a) != len(b) {
		return fmt.Sprintf("manifest has %d entries, container %d", len(a), len(b))
	}
	var keys []string
	for i := range a {
		if a[i] != b[i] {
			ka, _, _ := strings.Cut(a[i], "=")
			kb, _, _ := strings.Cut(b[i], "=")
			if ka == kb {
				keys = append(keys, fmt.Sprintf("%q (value)", clip(ka)))
			} else {
				keys = append(keys, fmt.Sprintf("entry %d (%q vs %q)", i, clip(ka), clip(kb)))
			}
		}
	}
	return "differs at " + strings.Join(keys, ", ")
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isKeyID(s string) bool {
	h, ok := strings.CutPrefix(s, keyIDPrefix)
	return ok && isLowerHex(h, 64)
}

// clip keeps error messages about hostile input short.
func clip(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// payloadHeader is read before the strict decode so that a newer version is reported as such
// rather than as a list of unknown members.
type payloadHeader struct {
	Version json.RawMessage `json:"version"`
}

// ParsePayload decodes and validates payload bytes (the signed part of a manifest) without
// any trust decision: for a signing service that checks what it is asked to sign. Never base
// a trust decision on its result: use Verify.
func ParsePayload(payload []byte) (*Manifest, error) {
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: payload is %d bytes, more than %d", ErrMalformed, len(payload), MaxPayloadSize)
	}
	if err := strictjson.CheckStructureLowerCase(payload); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	var hdr payloadHeader
	if err := json.Unmarshal(payload, &hdr); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	switch v := string(hdr.Version); v {
	case "":
		return nil, fmt.Errorf("%w: payload has no version", ErrMalformed)
	case "1":
	default:
		return nil, fmt.Errorf("%w %s (this build reads version %d)", ErrUnsupportedVersion, clip(v), Version)
	}
	var m Manifest
	if err := strictjson.DecodeLowerCase(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &m, nil
}

// marshalPayload encodes a validated manifest.
func marshalPayload(m *Manifest) ([]byte, error) {
	b, err := strictjson.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest payload: %w", err)
	}
	if len(b) > MaxPayloadSize {
		return nil, fmt.Errorf("manifest payload is %d bytes, more than %d", len(b), MaxPayloadSize)
	}
	return b, nil
}

// envelope is the manifest file: the payload bytes and their signature, side by side.
type envelope struct {
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// strictBase64 refuses non-canonical encodings (non-zero padding bits), so that exactly one
// string encodes given bytes.
var strictBase64 = base64.StdEncoding.Strict()

func decodeEnvelope(data []byte) (payload, sig []byte, err error) {
	if len(data) > MaxSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), MaxSize)
	}
	var env envelope
	if err := strictjson.DecodeLowerCase(data, &env); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Payload == "" || env.Signature == "" {
		return nil, nil, fmt.Errorf("%w: payload and signature are both required", ErrMalformed)
	}
	if payload, err = strictBase64.DecodeString(env.Payload); err != nil {
		return nil, nil, fmt.Errorf("%w: payload is not base64: %v", ErrMalformed, err)
	}
	if sig, err = strictBase64.DecodeString(env.Signature); err != nil {
		return nil, nil, fmt.Errorf("%w: signature is not base64: %v", ErrMalformed, err)
	}
	return payload, sig, nil
}

func encodeEnvelope(payload, sig []byte) ([]byte, error) {
	b, err := strictjson.Encode(envelope{
		Payload:   strictBase64.EncodeToString(payload),
		Signature: strictBase64.EncodeToString(sig),
	})
	if err != nil {
		return nil, fmt.Errorf("encode manifest envelope: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseUnverified reads a manifest file without checking its signature, for display and for
// the cache's consistency checks. Never base a trust decision on its result: use Verify.
func ParseUnverified(data []byte) (*Manifest, error) {
	payload, _, err := decodeEnvelope(data)
	if err != nil {
		return nil, err
	}
	return ParsePayload(payload)
}
