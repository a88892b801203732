package kbs

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/inclavare-containers/inclavare-go/internal/strictjson"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Attestation is the third message (POST /kbs/v0/attest) as this package's client sends it:
// protocol 0.4.0, kbs-types' Attestation.
type Attestation struct {
	InitData    json.RawMessage   `json:"init-data,omitempty"`
	RuntimeData RuntimeData       `json:"runtime-data"`
	TEEEvidence CompositeEvidence `json:"tee-evidence"`
}

// RuntimeData is what the evidence binds (through its digest): the challenge nonce and the TEE key.
type RuntimeData struct {
	Nonce     string `json:"nonce"`
	TEEPubKey *JWK   `json:"tee-pubkey"`
}

// CompositeEvidence is the primary TEE's evidence and, as a JSON string, a map of additional
// devices' evidence ("" when none).
type CompositeEvidence struct {
	Primary    json.RawMessage `json:"primary_evidence"`
	Additional string          `json:"additional_evidence"`
}

// Attested is an Attestation message of any accepted version, as a broker reads it.
type Attested struct {
	Version string
	// Nonce is the nonce the client echoed (0.4.0); a broker binds its own session's nonce, and
	// refuses a message whose echo differs.
	Nonce string
	Key   *JWK
	// Evidence is the primary TEE's evidence (a JSON value: see UnwrapEvidence).
	Evidence json.RawMessage
	// Additional is the additional-evidence string (0.3.0 and later), bound into the report data.
	Additional string
	// InitData is the optional init-data (0.4.0); nothing here evaluates it.
	InitData json.RawMessage
}

// ParseAttestation reads an Attestation message of protocol version (one of Versions). Unknown
// members of the runtime data are refused: the report data binds only the nonce, the key and the
// additional evidence, so anything else there would look bound and not be.
func ParseAttestation(version string, body []byte) (*Attested, error) {
	if err := CheckVersion(version); err != nil {
		return nil, err
	}
	a := &Attested{Version: version}
	// One reading: a member named twice (in any case) would be read as its last copy here and
	// maybe as its first by a reviewer or another verifier.
	if err := strictjson.CheckMembers(body); err != nil {
		return nil, fmt.Errorf("attestation message: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("attestation message: %w", err)
	}
	evRaw, ok := top["tee-evidence"]
	if !ok || isNull(evRaw) {
		return nil, errors.New(`attestation message: no "tee-evidence"`)
	}
	switch version {
	case Version:
		rd, ok := top["runtime-data"]
		if !ok {
			return nil, errors.New(`attestation message (0.4.0): no "runtime-data"`)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(rd, &fields); err != nil || fields == nil {
			return nil, errors.New(`attestation message: "runtime-data" must be an object`)
		}
		for k := range fields {
			if k != "nonce" && k != "tee-pubkey" {
				return nil, fmt.Errorf(`attestation message: "runtime-data" member %q is not bound by the evidence (only "nonce" and "tee-pubkey" are)`, k)
			}
		}
		if err := json.Unmarshal(fields["nonce"], &a.Nonce); err != nil || a.Nonce == "" {
			return nil, errors.New(`attestation message: "runtime-data" has no "nonce" string`)
		}
		k, err := ParseJWK(fields["tee-pubkey"])
		if err != nil {
			return nil, fmt.Errorf(`attestation message: "runtime-data"."tee-pubkey": %w`, err)
		}
		a.Key = k
		if id, ok := top["init-data"]; ok && !isNull(id) {
			a.InitData = id
		}
	default:
		k, err := ParseJWK(top["tee-pubkey"])
		if err != nil {
			return nil, fmt.Errorf(`attestation message (%s): "tee-pubkey": %w`, version, err)
		}
		a.Key = k
	}
	if version == Version02 {
		a.Evidence = evRaw
		return a, nil
	}
	var ce struct {
		Primary    json.RawMessage `json:"primary_evidence"`
		Additional *string         `json:"additional_evidence"`
	}
	dec := json.NewDecoder(bytes.NewReader(evRaw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ce); err != nil {
		return nil, fmt.Errorf(`attestation message: "tee-evidence" is not {"primary_evidence", "additional_evidence"}: %w`, err)
	}
	if len(ce.Primary) == 0 || isNull(ce.Primary) || ce.Additional == nil {
		return nil, errors.New(`attestation message: "tee-evidence" needs "primary_evidence" and "additional_evidence"`)
	}
	a.Evidence, a.Additional = ce.Primary, *ce.Additional
	return a, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// RuntimeDataJSON is the canonical (RFC 8785) JSON whose digest the evidence carries: for protocol
// 0.3.0 and later {"additional-evidence", "nonce", "tee-pubkey"}, for 0.2.0 {"nonce", "tee-pubkey"},
// as trustee's KBS builds it from the message.
func RuntimeDataJSON(version, nonce string, key *JWK, additional string) ([]byte, error) {
	if err := CheckVersion(version); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("runtime data: no TEE key")
	}
	m := map[string]any{"nonce": nonce, "tee-pubkey": key.members()}
	if version != Version02 {
		m["additional-evidence"] = additional
	}
	return canonicalJSON(m)
}

// ReportData is the 64 bytes a TEE's evidence must carry: the digest (alg, "sha384" unless the
// challenge selected another) of RuntimeDataJSON, zero-padded as trustee's attesters pad it.
func ReportData(alg, version, nonce string, key *JWK, additional string) ([attestation.ReportDataSize]byte, error) {
	var out [attestation.ReportDataSize]byte
	doc, err := RuntimeDataJSON(version, nonce, key, additional)
	if err != nil {
		return out, err
	}
	h, err := hashFor(alg)
	if err != nil {
		return out, err
	}
	h.Write(doc)
	copy(out[:], h.Sum(nil))
	return out, nil
}

func hashFor(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case HashSHA384:
		return sha512.New384(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("runtime-data hash algorithm %q is not supported (sha256, sha384, sha512)", alg)
}

// canonicalJSON encodes objects of strings and objects per RFC 8785 (JCS): members sorted by
// their UTF-16 code units, no whitespace, strings escaped as ECMAScript's JSON.stringify does.
// The runtime data holds nothing else (no numbers, whose JCS form is the hard part).
func canonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := writeCanonical(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeCanonical(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case string:
		return writeCanonicalString(b, t)
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return lessUTF16(keys[i], keys[j]) })
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonicalString(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeCanonical(b, t[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	}
	return fmt.Errorf("canonical JSON: unsupported value %T", v)
}

func writeCanonicalString(b *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("canonical JSON: string is not valid UTF-8")
	}
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				b.WriteString(`\u00`)
				b.WriteString(strconv.FormatInt(int64(r)>>4, 16))
				b.WriteString(strconv.FormatInt(int64(r)&0xf, 16))
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return nil
}

func lessUTF16(a, b string) bool {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	for i := 0; i < len(ua) && i < len(ub); i++ {
		if ua[i] != ub[i] {
			return ua[i] < ub[i]
		}
	}
	return len(ua) < len(ub)
}
