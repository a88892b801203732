package inclavared

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
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

// Codec reads and writes JSON messages on a stream.
type Codec struct {
	r   *budgetReader
	dec *json.Decoder
	w   io.Writer
}

// budgetReader stops a peer from making one message larger than MaxMessageSize: the budget is
// renewed per message (the decoder may read a little of the next one ahead, hence 2×).
type budgetReader struct {
	r    io.Reader
	left int
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("message exceeds %d bytes", MaxMessageSize)
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= n
	return n, err
}

// NewCodec returns a codec on rw.
func NewCodec(rw io.ReadWriter) *Codec {
	br := &budgetReader{r: bufio.NewReader(rw), left: 2 * MaxMessageSize}
	return &Codec{r: br, dec: json.NewDecoder(br), w: rw}
}

// Read decodes the next message into v (a *Request, *Response or *json.RawMessage). It returns
// io.EOF when the peer closed between messages.
func (c *Codec) Read(v any) error {
	c.r.left = 2 * MaxMessageSize
	if err := c.dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("read message: %w", err)
	}
	return nil
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
