// Package strictjson decodes JSON documents that have exactly one reading: it refuses what
// encoding/json would otherwise accept silently (invalid UTF-8, duplicate or case-folded
// member names, null, unknown members, trailing data). It is the parsing rule of every
// document of the enclave manifest and its signing protocol, and must never relax it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxDepth bounds nesting: the deepest document of the manifest format is three levels deep.
const MaxDepth = 8

// Decode decodes exactly one JSON value of data into v, refusing everything
// encoding/json would otherwise let through silently: invalid UTF-8 (it would be replaced by
// U+FFFD), duplicate member names (the last would win), member names that only match a field
// case-insensitively, null, unknown members and anything after the value. A document this
// function accepts therefore has exactly one reading.
func Decode(data []byte, v any) error {
	if err := CheckStructure(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

type jsonFrame struct {
	object  bool
	wantKey bool
	keys    map[string]bool
}

// CheckStructure walks the tokens of data and enforces the rules of Decode that
// encoding/json cannot: valid UTF-8, one top-level value, no null, member names of lower-case
// ASCII letters, digits and '_' (so no case-folded match can exist), each at most once per
// object, bounded nesting.
func CheckStructure(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	values := 0
	// valueDone records that a value (scalar or closed container) completed at the current level.
	valueDone := func() {
		if len(stack) == 0 {
			values++
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("syntax: %w", err)
		}
		if len(stack) == 0 && values > 0 {
			return errors.New("data after the JSON value")
		}
		if len(stack) > 0 {
			if top := stack[len(stack)-1]; top.object && top.wantKey {
				if d, ok := tok.(json.Delim); ok && d == '}' {
					stack = stack[:len(stack)-1]
					valueDone()
					continue
				}
				key, ok := tok.(string)
				if !ok {
					return fmt.Errorf("syntax: member name %v is not a string", tok)
				}
				if !isMemberName(key) {
					return fmt.Errorf("member name %q: only lower-case letters, digits and _ are allowed", key)
				}
				if top.keys[key] {
					return fmt.Errorf("member %q appears twice", key)
				}
				top.keys[key] = true
				top.wantKey = false
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= MaxDepth {
					return fmt.Errorf("nested deeper than %d levels", MaxDepth)
				}
				stack = append(stack, &jsonFrame{object: t == '{', wantKey: t == '{', keys: map[string]bool{}})
			case ']':
				stack = stack[:len(stack)-1]
				valueDone()
			default:
				// '}' while a value is expected cannot get past the decoder's syntax check.
				return fmt.Errorf("syntax: unexpected %v", t)
			}
		case nil:
			return errors.New("null is not allowed (omit the member instead)")
		default:
			valueDone()
		}
	}
	if values == 0 {
		return errors.New("empty document")
	}
	return nil
}

func isMemberName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Encode marshals v without HTML escaping and without the encoder's trailing newline.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
