// Package strictjson decodes JSON documents that have exactly one reading: it refuses what
// encoding/json would otherwise accept silently (invalid UTF-8, duplicate member names, member
// names that match a field only case-insensitively, null, unknown members, trailing data). It is
// the parsing rule of every security-relevant document: attestation policies, the inclavared
// protocol, the enclave manifest and its signing protocol. It must never relax these rules.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDepth bounds nesting: the deepest document we read (a policy) is five levels deep.
const MaxDepth = 8

// Decode decodes exactly one JSON value of data into v, refusing everything encoding/json
// would otherwise let through silently: invalid UTF-8 (it would be replaced by U+FFFD), member
// names that appear twice in an object, also when they differ only in case (the last would
// win, or both would fill one field), member names that match a struct field only
// case-insensitively, null, unknown members and anything after the value. A document this
// function accepts therefore has exactly one reading.
func Decode(data []byte, v any) error { return decode(data, v, false) }

// DecodeLowerCase is Decode for formats whose member names are all lower-case ASCII letters,
// digits and '_' (the enclave manifest): any other name is refused.
func DecodeLowerCase(data []byte, v any) error { return decode(data, v, true) }

func decode(data []byte, v any, lower bool) error {
	if err := checkStructure(data, lower, false); err != nil {
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
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer {
		if err := exactNames(data, rv.Type().Elem(), "the document", 0); err != nil {
			return err
		}
	}
	return nil
}

// CheckStructure enforces the structural rules of Decode on data without decoding it: valid
// UTF-8, one top-level value, no null, no member name twice per object (compared with Unicode
// case folding), bounded nesting.
func CheckStructure(data []byte) error { return checkStructure(data, false, false) }

// CheckMembers is CheckStructure for protocols that use null (another party's, such as
// trustee's KBS messages): null is allowed, everything else is refused as CheckStructure does.
func CheckMembers(data []byte) error { return checkStructure(data, false, true) }

// CheckStructureLowerCase is CheckStructure with DecodeLowerCase's rule for member names.
func CheckStructureLowerCase(data []byte) error { return checkStructure(data, true, false) }

type jsonFrame struct {
	object  bool
	wantKey bool
	keys    map[string]string // folded name -> name as written
	path    string            // where the container sits, for error messages
	last    string            // the member whose value is being read
}

// checkStructure walks the tokens of data and enforces the rules encoding/json cannot.
func checkStructure(data []byte, lower, allowNull bool) error {
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
				if lower && !isMemberName(key) {
					return fmt.Errorf("member name %q: only lower-case letters, digits and _ are allowed", key)
				}
				folded := fold(key)
				if prev, dup := top.keys[folded]; dup {
					if prev == key {
						return fmt.Errorf("member %q appears twice in %s", key, top.path)
					}
					return fmt.Errorf("members %q and %q of %s differ only in case: one would silently override the other", prev, key, top.path)
				}
				top.keys[folded] = key
				top.wantKey = false
				top.last = key
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
				path := "the document"
				if len(stack) > 0 {
					if top := stack[len(stack)-1]; top.object {
						path = strings.TrimPrefix(top.path+"."+top.last, "the document.")
					} else {
						path = top.path + "[]"
					}
				}
				stack = append(stack, &jsonFrame{object: t == '{', wantKey: t == '{', keys: map[string]string{}, path: path})
			case ']':
				stack = stack[:len(stack)-1]
				valueDone()
			default:
				// '}' while a value is expected cannot get past the decoder's syntax check.
				return fmt.Errorf("syntax: unexpected %v", t)
			}
		case nil:
			if !allowNull {
				return errors.New("null is not allowed (omit the member instead)")
			}
			valueDone()
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

// fold maps every rune of s to the smallest rune of its Unicode case-folding orbit, so that two
// names equal under case folding (as encoding/json matches them: "K" and the Kelvin sign, "s"
// and "ſ") fold to the same string.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// exactNames checks that every member of an object decoded into a struct names a field exactly
// as its tag (or Go name) spells it: encoding/json would also match "ALLOW_DEBUG" to
// "allow_debug", so a reviewer could read one rule and the decoder apply another.
func exactNames(data []byte, t reflect.Type, where string, depth int) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > MaxDepth || reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil // a type with its own decoding answers for its own rules
	}
	switch t.Kind() {
	case reflect.Struct:
		var members map[string]json.RawMessage
		if err := json.Unmarshal(data, &members); err != nil {
			return nil // not an object: the decoder already judged it
		}
		fields := fieldNames(t)
		for name, raw := range members {
			ft, ok := fields[name]
			if !ok {
				return fmt.Errorf("unknown member %q in %s (member names are case-sensitive)", name, where)
			}
			if err := exactNames(raw, ft, fmt.Sprintf("%q", name), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		var members map[string]json.RawMessage
		if err := json.Unmarshal(data, &members); err != nil {
			return nil
		}
		for name, raw := range members {
			if err := exactNames(raw, t.Elem(), fmt.Sprintf("%s.%q", where, name), depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // base64 text
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil {
			return nil
		}
		for i, raw := range elems {
			if err := exactNames(raw, t.Elem(), fmt.Sprintf("%s[%d]", where, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// fieldNames lists the JSON member names of struct t as encoding/json derives them (tag name,
// else the Go name; embedded untagged structs promoted), with each field's type.
func fieldNames(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	// Promoted fields never shadow the outer struct's own.
	for _, et := range embedded {
		for n, typ := range fieldNames(et) {
			if _, shadowed := out[n]; !shadowed {
				out[n] = typ
			}
		}
	}
	return out
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
