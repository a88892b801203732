package inclavared

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
)

// strictCases are some of the malformed messages of package wire's codec tests (which has them
// all), one of each kind.
var strictCases = []struct{ name, msg, want string }{
	{"duplicate key", `{"type":"attest","type":"echo"}`, `member "type" appears twice`},
	{"unknown field", `{"type":"GETENCLAVEINFO","admin":true}`, `unknown field "admin"`},
	{"trailing garbage", `{"type":"GETENCLAVEINFO"}garbage`, `data after the message: "garbage"`},
	{"null member", `{"type":"GETENCLAVEINFO","nonce":null}`, `null is not allowed`},
	{"duplicate in forwarded request", `{"type":"forward","request":{"type":"echo","type":"x"}}`, `member "type" appears twice in request`},
}

// TestStrictMessages sends malformed messages over a real Enclave-TLS connection to the daemon
// (playing a verifier): each gets an error naming the problem, the connection is closed, and
// nothing reaches the upstream.
func TestStrictMessages(t *testing.T) {
	s := startDaemon(t, "tcp", nil)
	for _, tc := range strictCases {
		conn, codec := s.dial(t)
		_ = conn.SetDeadline(time.Now().Add(hangGuard))
		if _, err := conn.Write([]byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		var resp wire.Response
		if err := codec.Read(&resp); err != nil || resp.Type != wire.TypeError || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("%s: answer %+v %v, want an error containing %q", tc.name, resp, err, tc.want)
		}
		if err := codec.Read(&resp); err == nil {
			t.Errorf("%s: connection still open after a malformed message: %+v", tc.name, resp)
		}
		conn.Close()
	}
	if n := s.upstream.requests.Load(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
	// A well-formed message on a fresh connection is served.
	conn, codec := s.dial(t)
	defer conn.Close()
	if r := call(t, conn, codec, &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"ok"}`)}); r.Error != "" {
		t.Fatal(r.Error)
	}
}
