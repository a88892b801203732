// Package bootstrap speaks the shim bootstrap protocol of containerd 2.3 and later, so that
// one containerd-shim-rune-v2 binary serves both containerd generations: containerd 1.x
// starts the shim with its runtime options on stdin and takes a socket address back (task
// API v2); containerd ≥ 2.3 sends a BootstrapParams message instead and takes a
// BootstrapResult naming task API v3.
//
// The messages are those of containerd's api/runtime/bootstrap/v1, read and written with
// protowire: the api module version that defines them no longer builds with containerd 1.7,
// whose shim packages this shim is built on. This package must never guess: input that is
// not a well-formed BootstrapParams for this very shim is reported as legacy input.
package bootstrap

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// TaskAPIVersion is the task API a shim started through the bootstrap protocol serves.
const TaskAPIVersion = 3

// ErrLegacy says the input is not bootstrap parameters for this shim: the caller is
// containerd 1.x (or 2.0-2.2), which sends runtime options, or nothing, instead.
var ErrLegacy = errors.New("not bootstrap parameters")

// Params is what containerd ≥ 2.3 tells a shim it starts. Fields this shim has no use for
// (log level, addresses also passed as flags) are not kept.
type Params struct {
	InstanceID        string
	Namespace         string
	ContainerdVersion string
	// SocketDir, when containerd's configuration sets one, is where shim sockets belong.
	SocketDir string
	// Extensions carry the runtime options (e.g. containerd.runc.v1.Options).
	Extensions []*anypb.Any
}

// Field numbers of BootstrapParams, Extension and Any.
const (
	fieldInstanceID        = 1
	fieldNamespace         = 2
	fieldContainerdVersion = 4
	fieldExtensions        = 8
	fieldSocketDir         = 9

	fieldExtensionValue = 1

	fieldAnyTypeURL = 1
	fieldAnyValue   = 2

	fieldResultVersion  = 1
	fieldResultAddress  = 2
	fieldResultProtocol = 3
)

// Parse reads input as the BootstrapParams containerd sends a shim started as instance id
// in namespace ns. It returns an error wrapping ErrLegacy when input is empty, is not a
// well-formed message, or names another instance or namespace: runtime options (an Any)
// also decode as a message, so the identity check is what tells the two apart.
func Parse(input []byte, id, ns string) (*Params, error) {
	if len(input) == 0 {
		return nil, fmt.Errorf("%w: no input", ErrLegacy)
	}
	var p Params
	err := fields(input, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case fieldInstanceID, fieldNamespace, fieldContainerdVersion, fieldSocketDir:
			if typ != protowire.BytesType {
				return fmt.Errorf("field %d: wire type %d, want bytes", num, typ)
			}
			s := string(v)
			switch num {
			case fieldInstanceID:
				p.InstanceID = s
			case fieldNamespace:
				p.Namespace = s
			case fieldContainerdVersion:
				p.ContainerdVersion = s
			case fieldSocketDir:
				p.SocketDir = s
			}
		case fieldExtensions:
			if typ != protowire.BytesType {
				return fmt.Errorf("extensions: wire type %d, want bytes", typ)
			}
			a, err := parseExtension(v)
			if err != nil {
				return fmt.Errorf("extension: %w", err)
			}
			if a != nil {
				p.Extensions = append(p.Extensions, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLegacy, err)
	}
	if p.InstanceID != id || p.Namespace != ns {
		return nil, fmt.Errorf("%w: instance %q in namespace %q, not %q in %q", ErrLegacy, p.InstanceID, p.Namespace, id, ns)
	}
	return &p, nil
}

// Extension returns the extension of the given type URL, or nil.
func (p *Params) Extension(typeURL string) *anypb.Any {
	for _, a := range p.Extensions {
		if a.GetTypeUrl() == typeURL {
			return a
		}
	}
	return nil
}

func parseExtension(b []byte) (*anypb.Any, error) {
	var a *anypb.Any
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldExtensionValue {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("value: wire type %d, want bytes", typ)
		}
		a = &anypb.Any{}
		return fields(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num != fieldAnyTypeURL && num != fieldAnyValue {
				return nil
			}
			if typ != protowire.BytesType {
				return fmt.Errorf("any field %d: wire type %d, want bytes", num, typ)
			}
			if num == fieldAnyTypeURL {
				a.TypeUrl = string(v)
			} else {
				a.Value = append([]byte(nil), v...)
			}
			return nil
		})
	})
	return a, err
}

// fields calls f for each field of the message in b, with the field's bytes for the bytes
// wire type (nil otherwise). Unknown fields are the caller's to skip: later containerd
// releases may add some.
func fields(b []byte, f func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

// Result is the BootstrapResult a shim started through the bootstrap protocol prints:
// task API v3 over ttrpc at address.
func Result(address string) []byte {
	var b []byte
	b = protowire.AppendTag(b, fieldResultVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, TaskAPIVersion)
	b = protowire.AppendTag(b, fieldResultAddress, protowire.BytesType)
	b = protowire.AppendString(b, address)
	b = protowire.AppendTag(b, fieldResultProtocol, protowire.BytesType)
	b = protowire.AppendString(b, "ttrpc")
	return b
}
