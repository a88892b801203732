package wasm

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		module  []byte
		wantErr string // "" means valid
	}{
		{"trapping command is still a valid module", trapModule(), ""},
		{"memory-growing command", growModule(1), ""},
		{"empty input", nil, "invalid wasm module: "},
		{"text, not wasm", []byte("(module)"), "invalid wasm module: "},
		{"bad version", []byte{0x00, 'a', 's', 'm', 0x02, 0x00, 0x00, 0x00}, "invalid wasm module: "},
		{"truncated", trapModule()[:20], "invalid wasm module: "},
		{"no _start", module(), "invalid wasm module: no exported function _start"},
		{"unknown module import", importModule("env", "f"), "invalid wasm module: imports function env.f, which builtin:wasm does not provide"},
		{"wasi import with the wrong type", importModule("wasi_snapshot_preview1", "fd_write"),
			"invalid wasm module: imports function wasi_snapshot_preview1.fd_write as (i32) -> (), but it is (i32, i32, i32, i32) -> (i32)"},
		{"wasi import with the right type", importModule("wasi_snapshot_preview1", "proc_exit"), ""},
		{"evidence import with the wrong type", importModule("inclavare", "get_evidence"),
			"invalid wasm module: imports function inclavare.get_evidence as (i32) -> ()"},
		{"_start with a parameter", module(
			section(1, []byte{0x01, 0x60, 0x01, 0x7f, 0x00}),
			section(3, []byte{0x01, 0x00}),
			section(7, []byte{0x01}, name("_start"), []byte{0x00, 0x00}),
			section(10, []byte{0x01, 0x02, 0x00, 0x0b}),
		), "_start must take no parameters and return nothing, has (i32) -> ()"},
		{"imported memory", module(
			section(1, []byte{0x01, 0x60, 0x00, 0x00}),
			section(2, []byte{0x01}, name("env"), name("memory"), []byte{0x02, 0x00, 0x01}),
			section(3, []byte{0x01, 0x00}),
			section(7, []byte{0x01}, name("_start"), []byte{0x00, 0x00}),
			section(10, []byte{0x01, 0x02, 0x00, 0x0b}),
		), "imports memory env.memory"},
		{"body does not type-check", commandModule(0, 0x41, 0x01), "invalid wasm module: "}, // leaves an i32 on the stack
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.module)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate error %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("the Go test programs", func(t *testing.T) {
		for _, name := range []string{"hello", "sleeper", "evidence"} {
			if err := Validate(program(t, name)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// FuzzValidate feeds untrusted module bytes to Validate: it must return (nil or an error), never
// panic or hang. The seeds are the hand-assembled modules, valid and invalid.
func FuzzValidate(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		[]byte("\x00asm"),
		module(),
		trapModule(),
		growModule(7),
		commandModule(2, 0x01),
		importModule("wasi_snapshot_preview1", "proc_exit"),
		importModule("inclavare", "get_evidence"),
		importModule("env", "f"),
		// Found by this fuzzer: declared sizes wazero would have allocated (gigabytes) before reading.
		[]byte("\x00asm\x01\x00\x00\x00\a0\xe0\xe0\xe000"),
		[]byte("\x00asm\x01\x00\x00\x00\x020\xcb\x9e0"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Validate(b)
		if err != nil && !strings.HasPrefix(err.Error(), "invalid wasm module: ") {
			t.Errorf("error without the invalid-module prefix: %v", err)
		}
	})
}

func TestCheckModuleBounds(t *testing.T) {
	header := "\x00asm\x01\x00\x00\x00"
	// _start's body declares 60000 i32 locals in a few bytes.
	manyLocals := module(
		section(1, []byte{0x01, 0x60, 0x00, 0x00}),
		section(3, []byte{0x01, 0x00}),
		section(7, []byte{0x01}, name("_start"), []byte{0x00, 0x00}),
		section(10, []byte{0x01, 0x06, 0x01}, leb128(60000), []byte{0x7f, 0x0b}),
	)
	tests := []struct {
		name string
		in   string
		want string // "" means accepted
	}{
		{"header only", header, ""},
		{"trap module", string(trapModule()), ""},
		{"grow module", string(growModule(3)), ""},
		{"no magic", "\x00asn\x01\x00\x00\x00", "no \\0asm magic"},
		{"version 2", "\x00asm\x02\x00\x00\x00", "unsupported WebAssembly binary version"},
		{"section larger than the file", header + "\x01\x30\x00", "declares 48 bytes, only 1 remain"},
		{"export count larger than the section", header + "\x07\x05\xe0\xe0\xe0\x30\x00", "vector of 102248544 entries in 1 bytes"},
		{"name longer than the section", header + "\x07\x04\x01\xff\xff\x03", "65535 bytes declared, only 0 remain"},
		{"data bytes longer than the section", header + "\x0b\x07\x01\x01\xff\xff\xff\xff\x0f", "4294967295 bytes declared"},
		{"too many locals", string(manyLocals), "60000 locals, more than 50000"},
		{"LEB128 too long", header + "\x01\x80\x80\x80\x80\x80\x01", "LEB128 too long"},
		{"left-over bytes", header + "\x03\x03\x01\x00\x00", "1 bytes left over"},
		{"GC rec group", header + "\x01\x04\x01\x4e\x00\x00", "unsupported type form 0x4e"},
		{"unknown section", header + "\x0e\x00", "unsupported section id 14"},
		{"custom section skipped", header + "\x00\x05\x03abc\xff", ""},
		{"name section local names bounded", header + "\x00\x0a\x04name\x02\x03\xff\xff\x03", "vector of"},
		{"name section subsection must be exact", header + "\x00\x0a\x04name\x00\x03\x01a\x00", "not consumed exactly"},
		{"element segment with expressions", header + "\x09\x07\x01\x05\x70\x01\xd2\x00\x0b", ""},
		{"element segment bad flag", header + "\x09\x03\x01\x08\x00", "unsupported element segment flag 8"},
		{"constant expression with a call", header + "\x06\x05\x01\x7f\x00\x10\x00", "unsupported constant expression opcode 0x10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkModuleBounds([]byte(tt.in))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}
