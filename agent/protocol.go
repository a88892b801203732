package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"

	"golang.org/x/sys/unix"
)

// Operations of the agent protocol.
const (
	// OpReady waits until the enclave runtime is initialised (pal_init) and reports its error, if any.
	OpReady = "ready"
	// OpStart runs the container's entrypoint in the enclave.
	OpStart = "start"
	// OpExec runs another process in a PAL's enclave with the caller's stdio (passed as fds). It is
	// served only on the host socket, on a connection rune opened for one exec and handed to the
	// exec'd runelet, which sends the request itself: its credentials (SCM_CREDENTIALS) name the
	// process whose confinement the enclave process must not exceed.
	OpExec = "exec"
	// OpSignal, on an exec connection, delivers a signal to that process.
	OpSignal = "signal"
	// OpAttest returns evidence binding Nonce (host socket).
	OpAttest = "attest"
	// OpEvidence returns evidence over the caller's 64 bytes of report data (both sockets).
	OpEvidence = "evidence"
	// OpResource returns a resource of the enclave's key broker, fetched after attesting to it
	// (container socket): Resource names it, "<repository>/<type>/<tag>".
	OpResource = "resource"
)

// Request is one message to the runelet. It is JSON on a stream socket, one object per message.
type Request struct {
	Op string `json:"op"`
	// Args, Env and Cwd describe the process for OpExec, as lists: never joined into one string.
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	// Signal is the signal number for OpSignal.
	Signal int `json:"signal,omitempty"`
	// Nonce (OpAttest, at most 64 bytes) or ReportData (OpEvidence, exactly 64 bytes).
	Nonce      []byte `json:"nonce,omitempty"`
	ReportData []byte `json:"report_data,omitempty"`
	// Resource (OpResource) is "<repository>/<type>/<tag>".
	Resource string `json:"resource,omitempty"`
}

// Response is the runelet's answer. An exec connection gets one response when the process started and
// one carrying ExitCode when it ended.
type Response struct {
	// Error, Kind and Phase are a failure: its message, its kind (enclave.Kind) and, for a
	// timeout, its phase. Err makes them an error again.
	Error       string  `json:"error,omitempty"`
	Kind        string  `json:"kind,omitempty"`
	Phase       string  `json:"phase,omitempty"`
	Started     bool    `json:"started,omitempty"`
	ExitCode    *int    `json:"exit_code,omitempty"`
	TEE         tee.TEE `json:"tee,omitempty"`
	Runtime     string  `json:"runtime,omitempty"`
	Measurement string  `json:"measurement,omitempty"`
	Evidence    []byte  `json:"evidence,omitempty"`
	ReportData  []byte  `json:"report_data,omitempty"`
	// Resource is the plaintext of an OpResource request.
	Resource []byte `json:"resource,omitempty"`
}

// ErrorResponse is the response that carries err across, kind and all.
func ErrorResponse(err error) *Response {
	r := &Response{}
	r.SetError(err)
	return r
}

// SetError makes r carry err (nil: no error).
func (r *Response) SetError(err error) {
	if err == nil {
		r.Error, r.Kind, r.Phase = "", "", ""
		return
	}
	k, phase := enclave.KindOf(err)
	r.Error, r.Kind, r.Phase = err.Error(), string(k), phase
}

// Err is the error r carries, nil when none: errors.Is(err, enclave.ErrNotFound) and the other
// kinds hold as they did on the side that sent it.
func (r *Response) Err() error {
	return enclave.RemoteError(enclave.Kind(r.Kind), r.Phase, r.Error)
}

// MaxMessage bounds a message so a confused or hostile peer cannot make the runelet allocate
// without limit. Evidence with certificate chains fits well within it.
const MaxMessage = 1 << 20

// Conn frames JSON messages over a unix stream socket, carrying file descriptors alongside.
type Conn struct {
	c   *net.UnixConn
	buf []byte
	// cred is the sender of the last message received, when the kernel reported one
	// (SO_PASSCRED) and every part of the message came from that same process; nil otherwise.
	cred *unix.Ucred
}

// NewConn frames messages over c.
func NewConn(c *net.UnixConn) *Conn { return &Conn{c: c} }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// SetDeadline sets the read and write deadline of the connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Sender is the process that sent the last message received, as the kernel reported it
// (SO_PASSCRED on the receiving socket, see PassCred); nil when it is not known.
func (c *Conn) Sender() *unix.Ucred { return c.cred }

// Send writes v as one message; files go with it as SCM_RIGHTS.
func (c *Conn) Send(v any, files ...*os.File) error {
	return c.sendMsg(v, false, files...)
}

// SendAsSelf is Send with this process's credentials attached (SCM_CREDENTIALS), which the
// kernel checks, so that the receiver learns which process asks.
func (c *Conn) SendAsSelf(v any, files ...*os.File) error {
	return c.sendMsg(v, true, files...)
}

func (c *Conn) sendMsg(v any, withCred bool, files ...*os.File) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(data) > MaxMessage {
		return fmt.Errorf("message of %d bytes exceeds the %d byte limit", len(data), MaxMessage)
	}
	frame := make([]byte, 4+len(data))
	frame[0], frame[1], frame[2], frame[3] = byte(len(data)>>24), byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(frame[4:], data)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if withCred {
		oob = append(oob, unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})...)
	}
	n, _, err := c.c.WriteMsgUnix(frame, oob, nil)
	if err != nil {
		return err
	}
	if n < len(frame) {
		_, err = c.c.Write(frame[n:])
	}
	return err
}

// Recv reads one message into v and returns the files that came with it.
func (c *Conn) Recv(v any) ([]*os.File, error) {
	var files []*os.File
	oob := make([]byte, unix.CmsgSpace(4*8)+unix.CmsgSpace(unix.SizeofUcred))
	c.cred = nil
	// A sender is known only if every read of the message names it (a stream read never spans
	// two senders' data when SO_PASSCRED is on); bytes already buffered have no sender on record.
	credKnown := len(c.buf) == 0
	first := true
	for len(c.buf) < 4 || len(c.buf) < 4+frameLen(c.buf) {
		if len(c.buf) >= 4 && frameLen(c.buf) > MaxMessage {
			CloseFiles(files)
			return nil, fmt.Errorf("message of %d bytes exceeds the %d byte limit", frameLen(c.buf), MaxMessage)
		}
		b := make([]byte, 64<<10)
		n, oobn, _, _, err := c.c.ReadMsgUnix(b, oob)
		var cred *unix.Ucred
		if oobn > 0 {
			fs, cr, perr := parseControl(oob[:oobn])
			files = append(files, fs...)
			if perr != nil {
				CloseFiles(files)
				return nil, perr
			}
			cred = cr
		}
		if n > 0 {
			switch {
			case cred == nil || (!first && (c.cred == nil || *c.cred != *cred)):
				credKnown = false
			case first:
				c.cred = cred
			}
			first = false
		}
		if n == 0 && err == nil {
			err = errors.New("connection closed")
		}
		if err != nil {
			CloseFiles(files)
			return nil, err
		}
		c.buf = append(c.buf, b[:n]...)
	}
	if !credKnown {
		c.cred = nil
	}
	n := frameLen(c.buf)
	data := c.buf[4 : 4+n]
	c.buf = append([]byte(nil), c.buf[4+n:]...)
	// Messages come from processes of the container too: one reading only (internal/strictjson).
	if err := strictjson.Decode(data, v); err != nil {
		CloseFiles(files)
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return files, nil
}

func frameLen(b []byte) int {
	return int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
}

// parseControl returns the descriptors (SCM_RIGHTS) and the sender's credentials
// (SCM_CREDENTIALS) of a control message.
func parseControl(oob []byte) ([]*os.File, *unix.Ucred, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, nil, fmt.Errorf("parse control message: %w", err)
	}
	var files []*os.File
	var cred *unix.Ucred
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_CREDENTIALS {
			if cr, err := unix.ParseUnixCredentials(&m); err == nil {
				cred = cr
			}
			continue
		}
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "passed-fd"))
		}
	}
	return files, cred, nil
}

// CloseFiles closes the files a message brought.
func CloseFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// PassCred makes the kernel attach the sender's credentials to what s receives (SO_PASSCRED);
// sockets accepted from a listener inherit it.
func PassCred(s syscall.Conn) error {
	raw, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_PASSCRED: %w", serr)
	}
	return nil
}
