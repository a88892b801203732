package manifest

// The signing service protocol (docs/enclave-manifest.md, "Signing service"): HTTPS with a
// client certificate, TLS 1.3, one URL.
//
//   GET  <url>  →  200 keyInfo                  which key the service signs with
//   POST <url>  signRequest  →  200 signResponse
//   errors      →  4xx/5xx serviceError

const (
	// MaxSignRequestSize bounds a signing request body: the base64 payload plus a little JSON.
	MaxSignRequestSize = MaxPayloadSize/3*4 + 4<<10
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
