package signservice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// Handler is the HTTP handler of a signing service (cmd/rune-signer). It signs only
// well-formed manifest payloads that name its own key, only for clients whose certificate
// the TLS layer verified, and logs every signature it makes with the client's identity, so
// that what was signed for whom can be audited. It is never a general-purpose signing
// oracle: the context prefix of SignatureInput and the payload checks see to that.
type Handler struct {
	key  *enclavemanifest.KeySigner
	id   enclavemanifest.Identity
	info []byte
	log  *slog.Logger
}

// NewHandler serves signatures made with key. An ephemeral key is refused: a service exists
// to sign with a key verifiers trust.
func NewHandler(key *enclavemanifest.KeySigner, log *slog.Logger) (*Handler, error) {
	id, err := key.Identity(context.Background())
	if err != nil {
		return nil, fmt.Errorf("signing service: %w", err)
	}
	if id.Ephemeral {
		return nil, errors.New("signing service: refusing to sign with an ephemeral key")
	}
	der, err := x509.MarshalPKIXPublicKey(id.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("signing service: %w", err)
	}
	info, err := strictjson.Encode(keyInfo{KeyID: id.KeyID, Algorithm: id.Algorithm, PublicKey: strictBase64.EncodeToString(der)})
	if err != nil {
		return nil, fmt.Errorf("signing service: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{key: key, id: id, info: info, log: log}, nil
}

// ServerTLSConfig is the server side of the signing service's TLS: TLS 1.3 only, and a
// client certificate issued by one of the CAs in clientCAFile is required.
func ServerTLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("signing service certificate: %w", err)
	}
	if clientCAFile == "" {
		return nil, errors.New("signing service: a client CA file is required (clients must be authenticated)")
	}
	pool, err := attestation.LoadCertPool(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("signing service client CA: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ServeHTTP implements http.Handler.
func (s *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The TLS configuration already requires a verified client certificate; checking again
	// here keeps the handler safe if it is ever mounted behind a different listener.
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		s.refuse(w, r, "", http.StatusUnauthorized, "a verified client certificate is required")
		return
	}
	leaf := r.TLS.VerifiedChains[0][0]
	client := fmt.Sprintf("%s (serial %s)", leaf.Subject, hex.EncodeToString(leaf.SerialNumber.Bytes()))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.reply(w, http.StatusOK, s.info)
	case http.MethodPost:
		s.sign(w, r, client)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.refuse(w, r, client, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed")
	}
}

func (s *Handler) sign(w http.ResponseWriter, r *http.Request, client string) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != contentTypeJSON {
		s.refuse(w, r, client, http.StatusUnsupportedMediaType, "the request must be "+contentTypeJSON)
		return
	}
	if r.ContentLength > MaxRequestSize {
		s.refuse(w, r, client, http.StatusRequestEntityTooLarge, fmt.Sprintf("request of %d bytes is larger than %d", r.ContentLength, MaxRequestSize))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.refuse(w, r, client, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", MaxRequestSize))
			return
		}
		s.refuse(w, r, client, http.StatusBadRequest, "read request: "+err.Error())
		return
	}
	var req signRequest
	if err := strictjson.DecodeLowerCase(body, &req); err != nil {
		s.refuse(w, r, client, http.StatusBadRequest, "request: "+err.Error())
		return
	}
	payload, err := strictBase64.DecodeString(req.Payload)
	if err != nil {
		s.refuse(w, r, client, http.StatusBadRequest, "payload is not base64: "+err.Error())
		return
	}
	if d := enclavemanifest.PayloadDigest(payload); req.Digest != d {
		s.refuse(w, r, client, http.StatusBadRequest, fmt.Sprintf("digest %q does not match the payload (%s)", clip(req.Digest), d))
		return
	}
	m, err := enclavemanifest.ParsePayload(payload)
	if err != nil {
		s.refuse(w, r, client, http.StatusBadRequest, err.Error())
		return
	}
	id := s.id
	if m.Signer.KeyID != id.KeyID || m.Signer.Algorithm != id.Algorithm || m.Signer.Ephemeral {
		s.refuse(w, r, client, http.StatusBadRequest, fmt.Sprintf("the payload names signer %s (%s, ephemeral %t); this service signs with %s (%s)",
			m.Signer.KeyID, m.Signer.Algorithm, m.Signer.Ephemeral, id.KeyID, id.Algorithm))
		return
	}
	sig, err := s.key.Sign(r.Context(), payload)
	if err != nil {
		s.log.Error("signing failed", "client", client, "err", err)
		s.refuse(w, r, client, http.StatusInternalServerError, "signing failed")
		return
	}
	resp, err := strictjson.Encode(signResponse{Signature: strictBase64.EncodeToString(sig), KeyID: id.KeyID, Algorithm: id.Algorithm})
	if err != nil {
		s.refuse(w, r, client, http.StatusInternalServerError, "encode response")
		return
	}
	attrs := []any{"client", client, "remote", r.RemoteAddr, "key_id", id.KeyID, "measurement", m.Measurement,
		"enclave_type", m.Enclave.Type, "runtime_path", m.Enclave.RuntimePath, "entrypoint", m.Entrypoint.Path,
		"payload_digest", req.Digest}
	if m.Image != nil {
		attrs = append(attrs, "image", m.Image.Reference, "image_digest", m.Image.Digest)
	}
	s.log.Info("signed enclave manifest", attrs...)
	s.reply(w, http.StatusOK, resp)
}

func (s *Handler) refuse(w http.ResponseWriter, r *http.Request, client string, status int, msg string) {
	s.log.Warn("request refused", "client", client, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", status, "reason", msg)
	body, err := strictjson.Encode(serviceError{Error: msg})
	if err != nil {
		body = []byte(`{"error":"internal error"}`)
	}
	s.reply(w, status, body)
}

func (s *Handler) reply(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", contentTypeJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}
