// Package wire is inclavared's protocol: the JSON messages between a verifier (shelter), inclavared
// and the confidential service, and the codec that reads each with exactly one reading
// (internal/strictjson). It is what a verifier links of inclavared: nothing of the daemon, the
// runelet or the enclave runtimes.
package wire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// Request types. GETENCLAVEINFO is the original Inclavare inclavared's request; the others are
// this implementation's (see README.md).
const (
	TypeGetEnclaveInfo = "GETENCLAVEINFO"
	TypeAttest         = "attest"
	TypeForward        = "forward"
	TypeEcho           = "echo"
)

// Response types.
const (
	MsgTypeEnclaveInfo = "ENCLAVEINFO" // "msgtype" of a GETENCLAVEINFO answer, as the original wrote it
	TypeAttestation    = "attestation"
	TypeForwarded      = "forwarded"
	TypeError          = "error"
)

// ProtocolVersion is the "version" of GETENCLAVEINFO answers (the original's value).
const ProtocolVersion = 1

// MaxMessageSize bounds one JSON message in either direction.
const MaxMessageSize = 1 << 20

// MaxNonceSize bounds an attest request's nonce (bytes, before hex encoding).
const MaxNonceSize = 64

// Request is one message to inclavared, and the requests inclavared and the confidential service
// exchange. One JSON object per message; a newline after it is customary but not required (the
// original clients sent a bare object).
type Request struct {
	Type string `json:"type"`
	// Nonce (attest) is hex: the upstream's evidence must bind it.
	Nonce string `json:"nonce,omitempty"`
	// Request (forward) is passed to the upstream service verbatim.
	Request json.RawMessage `json:"request,omitempty"`
	// Data (echo) is returned unchanged by the confidential service.
	Data string `json:"data,omitempty"`
}

// Response is one answer. Which fields are set depends on the request (README.md).
type Response struct {
	// GETENCLAVEINFO answer fields, named as the original inclavared named them.
	ID        string `json:"id,omitempty"`
	MsgType   string `json:"msgtype,omitempty"`
	Version   int    `json:"version,omitempty"`
	MRENCLAVE string `json:"mrenclave,omitempty"`
	MRSIGNER  string `json:"mrsigner,omitempty"`
	Message   string `json:"message,omitempty"`

	Type  string `json:"type,omitempty"`
	Error string `json:"error,omitempty"`
	// TEE and Measurements are what inclavared verified about the upstream (or, from the
	// confidential service, what it says about itself).
	TEE          string            `json:"tee,omitempty"`
	Measurements map[string]string `json:"measurements,omitempty"`
	Nonce        string            `json:"nonce,omitempty"`
	// UpstreamCertificate is the upstream's RA-TLS certificate (DER; base64 in JSON): its evidence,
	// key binding and nonce can be verified by the requester itself.
	UpstreamCertificate []byte `json:"upstream_certificate,omitempty"`
	// Response (forward) is the upstream's answer, verbatim.
	Response json.RawMessage `json:"response,omitempty"`
	Data     string          `json:"data,omitempty"`
}

// ErrMalformed marks a message that breaks the protocol's syntax: the connection cannot be trusted
// to be in step any more, so the reader answers with an error and closes it.
var ErrMalformed = errors.New("malformed message")

// Codec reads and writes JSON messages on a stream. Every message is one JSON object, read under
// strictjson's rules (no duplicate or case-variant member names, no unknown members, no null, valid
// UTF-8, bounded nesting), so that inclavared, the confidential service and any reviewer read a
// message the same way. Between messages only whitespace may appear.
type Codec struct {
	r *bufio.Reader
	w io.Writer
}

// NewCodec returns a codec on rw.
func NewCodec(rw io.ReadWriter) *Codec {
	return &Codec{r: bufio.NewReader(rw), w: rw}
}

// Read decodes the next message into v (a *Request, *Response or *json.RawMessage). It returns
// io.EOF when the peer closed between messages, and an error wrapping ErrMalformed when the message
// breaks the protocol: not an object, larger than MaxMessageSize, not strictly decodable into v, or
// followed by something other than whitespace or the next message's '{' (as far as it has
// arrived).
func (c *Codec) Read(v any) error {
	raw, err := c.next()
	if err != nil {
		return err
	}
	if err := strictjson.Decode(raw, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// next returns the bytes of the next message: the framing of a JSON object (strings and nesting
// followed, nothing else checked: strictjson judges the content).
func (c *Codec) next() ([]byte, error) {
	size := 0
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("read message: %w", err)
		}
		if size++; size > MaxMessageSize {
			return nil, fmt.Errorf("%w: more than %d bytes of whitespace", ErrMalformed, MaxMessageSize)
		}
		if isSpace(b) {
			continue
		}
		if b != '{' {
			return nil, fmt.Errorf("%w: a message must be a JSON object, found %q", ErrMalformed, b)
		}
		break
	}
	msg := []byte{'{'}
	depth, inString, escaped := 1, false, false
	for depth > 0 {
		if len(msg) >= MaxMessageSize {
			return nil, fmt.Errorf("%w: message exceeds %d bytes", ErrMalformed, MaxMessageSize)
		}
		b, err := c.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read message: %w", err)
		}
		msg = append(msg, b)
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			depth--
		}
	}
	// What already follows the message must be whitespace or the next message: a message with
	// trailing data has no single reading, and a client that sent one bare object and waits for
	// the answer must not be kept waiting for more bytes.
	ahead, _ := c.r.Peek(c.r.Buffered())
	for _, b := range ahead {
		if isSpace(b) {
			continue
		}
		if b != '{' {
			return nil, fmt.Errorf("%w: data after the message: %q", ErrMalformed, clip(ahead, 32))
		}
		break
	}
	return msg, nil
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func clip(b []byte, n int) []byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Write encodes v followed by a newline.
func (c *Codec) Write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	if len(b) > MaxMessageSize {
		return fmt.Errorf("message of %d bytes exceeds %d", len(b), MaxMessageSize)
	}
	_, err = c.w.Write(append(b, '\n'))
	return err
}

// Call writes req and reads one response on conn, within ctx's deadline.
func Call(ctx context.Context, conn net.Conn, c *Codec, req any, resp any) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := c.Write(req); err != nil {
		return err
	}
	if err := c.Read(resp); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("connection closed before the answer")
		}
		return err
	}
	return nil
}

// ParseAddress splits "tcp://host:port" or "unix:///path" into a network and an address for
// net.Dial/net.Listen.
func ParseAddress(s string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(s, "tcp://"):
		address = strings.TrimPrefix(s, "tcp://")
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("address %q: %w", s, err)
		}
		return "tcp", address, nil
	case strings.HasPrefix(s, "unix://"):
		address = strings.TrimPrefix(s, "unix://")
		if !strings.HasPrefix(address, "/") {
			return "", "", fmt.Errorf("address %q: a unix socket path must be absolute (unix:///path)", s)
		}
		return "unix", address, nil
	}
	return "", "", fmt.Errorf("address %q: want tcp://HOST:PORT or unix:///PATH", s)
}
