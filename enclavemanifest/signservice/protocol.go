// Package signservice is the signing service of enclave manifests, both ends: Client, a
// enclavemanifest.Signer that has a remote service sign (the shim's [signing.service]), and Handler,
// the service itself (cmd/rune-signer). The protocol (docs/enclave-manifest.md, "Signing
// service") is HTTPS with a client certificate, TLS 1.3, one URL:
//
//	GET  <url>  →  200 keyInfo                  which key the service signs with
//	POST <url>  signRequest  →  200 signResponse
//	errors      →  4xx/5xx serviceError
//
// It is apart from package manifest so that rune, which only verifies, links no HTTP or TLS
// code. The client must never talk plain HTTP or follow a redirect, nor accept a signature it
// has not verified; the service must never sign for an unauthenticated client, nor sign
// anything but a well-formed manifest payload naming its own key.
package signservice

import (
	"encoding/base64"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
)

const (
	// MaxRequestSize bounds a signing request body: the base64 payload plus a little JSON.
	MaxRequestSize = enclavemanifest.MaxPayloadSize/3*4 + 4<<10
	// maxServiceResponseSize bounds what the client reads back.
	maxServiceResponseSize = 64 << 10
	contentTypeJSON        = "application/json"
)

// keyInfo describes the service's key.
type keyInfo struct {
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	// PublicKey is the base64 DER SubjectPublicKeyInfo.
	PublicKey string `json:"public_key"`
}

// signRequest asks for a signature over SignatureInput(payload).
type signRequest struct {
	// Payload is the base64 payload.
	Payload string `json:"payload"`
	// Digest is PayloadDigest(payload): the service recomputes and compares it, so a payload
	// damaged on the way is refused rather than signed.
	Digest string `json:"digest"`
}

// signResponse carries the signature and names the key that made it.
type signResponse struct {
	Signature string `json:"signature"`
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
}

// serviceError is the body of every error response.
type serviceError struct {
	Error string `json:"error"`
}

// strictBase64 refuses non-canonical encodings, as the manifest format does.
var strictBase64 = base64.StdEncoding.Strict()

// clip keeps error messages about hostile input short.
func clip(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
