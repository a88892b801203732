package strictjson

import (
	"reflect"
	"strings"
	"testing"
)

type inner struct {
	B []string `json:"b"`
}

type doc struct {
	A     string `json:"a"`
	N     int    `json:"n"`
	Inner inner  `json:"inner"`
	Flag  bool   `json:"flag"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in, err string
	}{
		{"ok", `{"a":"x","n":1,"inner":{"b":["1","2"]},"flag":true}`, ""},
		{"whitespace around", " \n{\"a\":\"x\"}\n\t", ""},
		{"unknown member", `{"a":"x","z":1}`, `unknown field "z"`},
		{"unknown nested member", `{"inner":{"b":[],"c":1}}`, `unknown field "c"`},
		{"duplicate member", `{"a":"x","a":"y"}`, `"a" appears twice`},
		{"duplicate nested member", `{"inner":{"b":[],"b":[]}}`, `"b" appears twice`},
		{"same name in two objects", `{"a":"x","inner":{"b":[]},"flag":false}`, ""},
		{"upper case", `{"A":"x"}`, "lower-case"},
		{"folded long s", `{"inner":{"ſ":[]}}`, "lower-case"},
		{"empty name", `{"":1}`, "lower-case"},
		{"null member", `{"a":null}`, "null"},
		{"null in array", `{"inner":{"b":[null]}}`, "null"},
		{"top-level null", `null`, "null"},
		{"trailing value", `{"a":"x"}{}`, "after the JSON value"},
		{"trailing garbage", `{"a":"x"} x`, "syntax"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"too deep", `{"inner":{"b":[[[[[[[[["x"]]]]]]]]]}}`, "nested deeper"},
		{"syntax", `{"a":}`, "syntax"},
		{"empty", ``, "empty document"},
		{"wrong type", `{"n":"1"}`, "decode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := DecodeLowerCase([]byte(tc.in), &d)
			switch {
			case tc.err == "":
				if err != nil {
					t.Fatal(err)
				}
			case err == nil || !strings.Contains(err.Error(), tc.err):
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
}

type policyDoc struct {
	AllowDebug bool                 `json:"allow_debug"`
	TEEs       map[string]policyTEE `json:"tees"`
	Embedded
}

type policyTEE struct {
	MinSVN *uint64 `json:"min_svn"`
}

type Embedded struct {
	Note string `json:"note"`
}

// TestDecodeOneReading is the general rule (policies, protocol messages): member names may use
// any case where the type names them so (map keys such as "intelSgx"), but a name that reaches a
// field only through encoding/json's case-insensitive matching, or that differs from another
// member of its object only in case, is refused.
func TestDecodeOneReading(t *testing.T) {
	tests := []struct {
		name, in, err string
	}{
		{"ok", `{"allow_debug":false,"tees":{"intelSgx":{"min_svn":1}},"note":"x"}`, ""},
		{"case-folded duplicate", `{"allow_debug":false,"ALLOW_DEBUG":true}`, `differ only in case`},
		{"case-folded duplicate, Kelvin sign", `{"tees":{"k":{},"K":{}}}`, `differ only in case`},
		{"field only by case", `{"Allow_Debug":true}`, `unknown member "Allow_Debug"`},
		{"nested field only by case", `{"tees":{"sim":{"MIN_SVN":1}}}`, `unknown member "MIN_SVN"`},
		{"promoted field only by case", `{"NOTE":"x"}`, `unknown member "NOTE"`},
		{"exact duplicate", `{"allow_debug":false,"allow_debug":true}`, `appears twice`},
		{"map keys are data", `{"tees":{"Sim":{}}}`, ""},
		{"unknown", `{"allow_debug":false,"x":1}`, `unknown field "x"`},
		{"trailing", `{"allow_debug":false} {}`, "after the JSON value"},
		{"null", `{"tees":null}`, "null"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d policyDoc
			err := Decode([]byte(tc.in), &d)
			switch {
			case tc.err == "":
				if err != nil {
					t.Fatal(err)
				}
			case err == nil || !strings.Contains(err.Error(), tc.err):
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
}

func TestEncodeNoHTMLEscape(t *testing.T) {
	b, err := Encode(doc{A: "<&>"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"a":"<&>","n":0,"inner":{"b":null},"flag":false}` {
		t.Fatalf("got %s", b)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to a document it accepts
// with the same content.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"a":"x","n":1,"inner":{"b":["1","2"]},"flag":true}`))
	f.Add([]byte(`{"a":"x","a":"y"}`))
	f.Add([]byte(`[{"a":1}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		if Decode(data, &d) != nil {
			return
		}
		b, err := Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		if d.Inner.B == nil {
			// Encode writes null for an absent list, which Decode refuses by design.
			return
		}
		var d2 doc
		if err := Decode(b, &d2); err != nil {
			t.Fatalf("re-encoded document refused: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip changed %+v to %+v", d, d2)
		}
	})
}

// TestCheckMembers: for other parties' protocols that use null (trustee's KBS messages), null
// passes; members named twice, in any case, do not.
func TestCheckMembers(t *testing.T) {
	if err := CheckMembers([]byte(`{"init-data":null,"a":[null]}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"nonce":1,"NONCE":2}`, `{"a":1} x`, "{\"a\":\"\xff\"}"} {
		if err := CheckMembers([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
