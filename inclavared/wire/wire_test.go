package wire

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// malformed are messages with more than one reading, or none, and the error each must get. A
// reader that took the last duplicate (encoding/json), matched names case-insensitively, ignored
// unknown members or trailing data would act on one reading while a reviewer, a log or another
// implementation saw another.
var malformed = []struct{ name, msg, want string }{
	{"duplicate key", `{"type":"attest","type":"echo"}`, `member "type" appears twice`},
	{"case variant", `{"type":"attest","TYPE":"forward"}`, `members "type" and "TYPE" of the document differ only in case`},
	{"name in another case", `{"Type":"GETENCLAVEINFO"}`, `unknown member "Type"`},
	{"unknown field", `{"type":"GETENCLAVEINFO","admin":true}`, `unknown field "admin"`},
	{"trailing garbage", `{"type":"GETENCLAVEINFO"}garbage`, `data after the message: "garbage"`},
	{"trailing value", `{"type":"GETENCLAVEINFO"} 1`, `data after the message: "1"`},
	{"null member", `{"type":"GETENCLAVEINFO","nonce":null}`, `null is not allowed`},
	{"null message", `null`, `a message must be a JSON object, found 'n'`},
	{"array", `[{"type":"GETENCLAVEINFO"}]`, `a message must be a JSON object, found '['`},
	{"invalid UTF-8", "{\"type\":\"echo\",\"data\":\"\xff\"}", `not valid UTF-8`},
	{"wrong type", `{"type":1}`, `cannot unmarshal number`},
	{"duplicate in forwarded request", `{"type":"forward","request":{"type":"echo","type":"x"}}`, `member "type" appears twice in request`},
	{"case variant in forwarded request", `{"type":"forward","request":{"data":"a","DATA":"b"}}`, `differ only in case`},
}

func codecOn(s string) *Codec {
	return NewCodec(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(s), io.Discard})
}

func TestCodecStrict(t *testing.T) {
	for _, tc := range malformed {
		var req Request
		err := codecOn(tc.msg).Read(&req)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a malformed-message error containing %q", tc.name, err, tc.want)
		}
	}
	// Answers (what shelter and inclavared read) and forwarded answers follow the same rules.
	var resp Response
	if err := codecOn(`{"type":"error","error":"a","Error":"b"}`).Read(&resp); !errors.Is(err, ErrMalformed) {
		t.Errorf("case-variant answer: %v", err)
	}
	var raw json.RawMessage
	if err := codecOn(`{"type":"echo","data":"a","data":"b"}`).Read(&raw); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate in a raw message: %v", err)
	}
	// A message cut short is an I/O error, not a message.
	var req Request
	if err := codecOn(`{"type":"GETENC`).Read(&req); err == nil || errors.Is(err, ErrMalformed) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated message: %v", err)
	}
	// Braces and quotes inside strings do not end a message.
	c := codecOn(`{"type":"echo","data":"} \" {"}` + "\r\n\t " + `{"type":"b"}`)
	if err := c.Read(&req); err != nil || req.Data != `} " {` {
		t.Fatalf("%+v %v", req, err)
	}
	if err := c.Read(&req); err != nil || req.Type != "b" {
		t.Fatalf("%+v %v", req, err)
	}
	if err := c.Read(&req); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

// FuzzCodecRead: any bytes from a peer give a message or an error, never a panic; a message that
// is read re-encodes to one that reads back the same.
func FuzzCodecRead(f *testing.F) {
	for _, tc := range malformed {
		f.Add(tc.msg)
	}
	f.Add(`{"type":"forward","request":{"type":"echo","data":"x"}}` + "\n" + `{"type":"attest","nonce":"00"}`)
	f.Add(`{"type":"echo","data":"} \" {"}`)
	f.Fuzz(func(t *testing.T, in string) {
		c := codecOn(in)
		for i := 0; i < 4; i++ {
			var req Request
			if err := c.Read(&req); err != nil {
				return
			}
			b, err := json.Marshal(&req)
			if err != nil {
				t.Fatal(err)
			}
			var again Request
			if err := codecOn(string(b)).Read(&again); err != nil {
				t.Fatalf("%s re-encoded as %s does not read back: %v", in, b, err)
			}
			b2, _ := json.Marshal(&again)
			if string(b) != string(b2) {
				t.Fatalf("%s then %s", b, b2)
			}
		}
	})
}
