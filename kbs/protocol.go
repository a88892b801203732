package kbs

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Protocol versions. trustee's KBS (kbs/src/attestation/backend.rs) accepts exactly 0.4.0, and
// guest-components' kbs_protocol sends it; the protocol document's example still says "0.1.1"
// over the 0.4.0 message shapes. 0.2.0 and 0.3.0 differ only in where the TEE key sits and what
// the report data hashes, so a broker can serve them safely. 0.1.x clients read only RSA1_5 key
// encryption and a non-RFC 7516 JWE (the tag inside the ciphertext): they are refused.
const (
	Version   = "0.4.0" // what this package's client sends
	Version03 = "0.3.0" // {"tee-pubkey", "tee-evidence": {"primary_evidence", "additional_evidence"}}
	Version02 = "0.2.0" // {"tee-pubkey", "tee-evidence": <evidence>}; binds {nonce, tee-pubkey} only
)

// Versions lists the protocol versions a broker accepts, newest first.
var Versions = []string{Version, Version03, Version02}

// CheckVersion returns an error naming what is accepted unless v is one of Versions.
func CheckVersion(v string) error {
	if slices.Contains(Versions, v) {
		return nil
	}
	if strings.HasPrefix(v, "0.1.") {
		return fmt.Errorf("KBS protocol version %q is not supported: 0.1.x clients decrypt only RSA1_5 and a JWE whose tag is inside the ciphertext; accepted: %v", v, Versions)
	}
	return fmt.Errorf("KBS protocol version %q is not supported (accepted: %v)", v, Versions)
}

// Paths and names of the HTTP binding.
const (
	PathPrefix = "/kbs/v0"
	AuthPath   = PathPrefix + "/auth"
	AttestPath = PathPrefix + "/attest"
	// ResourcePrefix is followed by <repository>/<type>/<tag>.
	ResourcePrefix = PathPrefix + "/resource/"
	// CookieName is the session cookie trustee sets at /auth.
	CookieName = "kbs-session-id"
	// HashSHA384 is the runtime-data digest every TEE but IBM SE uses in trustee.
	HashSHA384 = "sha384"
)

// TEE names on the wire (kbs-types' Tee enum, lower case) that map to this repository's TEEs.
// "sample" is trustee's test TEE: it maps to the sim TEE, whose evidence (unlike trustee's unsigned
// sample evidence) is signed by a sim platform key that a verifier must trust explicitly. "sim"
// is accepted too (an extension: kbs-types has no such name, so trustee refuses it).
var teeNames = map[string]attestation.TEE{
	"sgx":    attestation.SGX,
	"tdx":    attestation.TDX,
	"snp":    attestation.SNP,
	"sample": attestation.Sim,
	"sim":    attestation.Sim,
}

// TEEOf maps a wire TEE name to this repository's TEE.
func TEEOf(name string) (attestation.TEE, error) {
	if t, ok := teeNames[name]; ok {
		return t, nil
	}
	return "", fmt.Errorf("TEE %q is not supported (supported: sgx, tdx, snp, sample or sim for the sim TEE)", name)
}

// WireTEE is the name a client sends for tee: trustee's spelling ("sgx", "tdx", "snp"), and
// "sample" for the sim TEE, so that trustee can parse the Request.
func WireTEE(tee attestation.TEE) (string, error) {
	switch tee {
	case attestation.SGX:
		return "sgx", nil
	case attestation.TDX:
		return "tdx", nil
	case attestation.SNP:
		return "snp", nil
	case attestation.Sim:
		return "sample", nil
	}
	return "", fmt.Errorf("TEE %q has no KBS protocol name", tee)
}

// Request is the first message (POST /kbs/v0/auth).
type Request struct {
	Version string `json:"version"`
	TEE     string `json:"tee"`
	// ExtraParams is "" or an object; guest-components sends {"supported-hash-algorithms": [...]}.
	ExtraParams json.RawMessage `json:"extra-params"`
}

// Challenge is the answer to a Request.
type Challenge struct {
	Nonce string `json:"nonce"`
	// ExtraParams carries {"selected-hash-algorithm": "sha384"} from verdictd; trustee sends "".
	ExtraParams json.RawMessage `json:"extra-params"`
}

// ErrorInfo is trustee's error body (RFC 7807 problem details).
type ErrorInfo struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// ErrorTypePrefix namespaces ErrorInfo.Type, as trustee's kbs/src/error.rs does.
const ErrorTypePrefix = "https://github.com/confidential-containers/kbs/errors/"

// Error types (trustee's names where trustee has one).
const (
	ErrAttestation     = "AttestationError"
	ErrPolicyDeny      = "PolicyDeny"
	ErrInvalidPath     = "InvalidRequestPath"
	ErrTokenNotFound   = "TokenNotFound"
	ErrSerde           = "SerdeError"
	ErrResourceMissing = "ResourceNotFound" // verdictd's own: trustee reports a storage error
	ErrJWE             = "JweError"
)

// RequestHashAlgorithms reads a Request's extra-params and reports whether the client can use
// SHA-384 for the runtime-data digest: true when it lists no algorithms (older clients, and
// trustee's default) or lists "sha384" in any case.
func RequestHashAlgorithms(extra json.RawMessage) error {
	if len(extra) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(extra, &obj) != nil {
		var s string
		if json.Unmarshal(extra, &s) == nil {
			return nil // "" as trustee documents it
		}
		return errors.New(`"extra-params" must be a string or an object`)
	}
	raw, ok := obj["supported-hash-algorithms"]
	if !ok {
		return nil
	}
	var algs []string
	if err := json.Unmarshal(raw, &algs); err != nil {
		return fmt.Errorf(`"supported-hash-algorithms" must be a list of names: %v`, err)
	}
	for _, a := range algs {
		if strings.EqualFold(a, HashSHA384) {
			return nil
		}
	}
	return fmt.Errorf("the client supports none of the runtime-data hash algorithms this broker uses (sha384); it lists %q", algs)
}

// ChallengeHashAlgorithm reads a Challenge's extra-params: the selected runtime-data digest,
// SHA-384 when none is selected (trustee sends "").
func ChallengeHashAlgorithm(extra json.RawMessage) (string, error) {
	if len(extra) == 0 {
		return HashSHA384, nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(extra, &obj) != nil {
		var s string
		if json.Unmarshal(extra, &s) == nil {
			return HashSHA384, nil
		}
		return "", errors.New(`challenge "extra-params" must be a string or an object`)
	}
	raw, ok := obj["selected-hash-algorithm"]
	if !ok {
		return HashSHA384, nil
	}
	var a string
	if err := json.Unmarshal(raw, &a); err != nil {
		return "", fmt.Errorf(`challenge "selected-hash-algorithm" is not a string: %v`, err)
	}
	a = strings.ToLower(a)
	if _, err := hashFor(a); err != nil {
		return "", err
	}
	return a, nil
}
