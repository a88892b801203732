package wasm

import (
	"fmt"
	"strconv"
	"strings"
)

const (
	// pageSize is the WebAssembly page size: memory grows and is limited in whole pages.
	pageSize = 64 << 10
	// maxPages is the most a 32-bit wasm memory can address (4 GiB), wazero's default limit.
	maxPages = 1 << 16
)

// runtimeArgs are the settings builtin:wasm reads from ENCLAVE_RUNTIME_ARGS.
type runtimeArgs struct {
	// memoryLimitPages caps every linear memory of every instance; 0 leaves wazero's default
	// (maxPages).
	memoryLimitPages uint32
	// interpreter runs the module on wazero's interpreter instead of compiling it to native code.
	interpreter bool
}

// parseRuntimeArgs reads ENCLAVE_RUNTIME_ARGS entries (already split at commas). Each entry is
// key=value; empty entries are ignored; an unknown or repeated key is an error, so a typo never
// silently drops a limit.
//
//	memory=<size>  size is a decimal number of bytes with an optional binary suffix K, M or G
//	               (KiB, MiB, GiB; case-insensitive), a multiple of 64K and at most 4G.
//	engine=<name>  compiler (the default: native code, compiled once per module digest into the
//	               host's code cache) or interpreter (no compilation at all: the first start of a
//	               module costs its validation only, every start runs slower; for short-lived
//	               workloads whose first start matters more than their speed).
func parseRuntimeArgs(args []string) (runtimeArgs, error) {
	var out runtimeArgs
	seen := map[string]bool{}
	for _, arg := range args {
		arg = strings.TrimSpace(arg)
		if arg == "" {
			continue
		}
		key, value, ok := strings.Cut(arg, "=")
		if !ok {
			return runtimeArgs{}, fmt.Errorf("builtin:wasm runtime argument %q: want key=value", arg)
		}
		if seen[key] {
			return runtimeArgs{}, fmt.Errorf("builtin:wasm runtime argument %q: %s given twice", arg, key)
		}
		seen[key] = true
		switch key {
		case "memory":
			pages, err := parseMemoryPages(value)
			if err != nil {
				return runtimeArgs{}, fmt.Errorf("builtin:wasm runtime argument %q: %w", arg, err)
			}
			out.memoryLimitPages = pages
		case "engine":
			switch value {
			case "compiler":
			case "interpreter":
				out.interpreter = true
			default:
				return runtimeArgs{}, fmt.Errorf("builtin:wasm runtime argument %q: engine %q (known: compiler, interpreter)", arg, value)
			}
		default:
			return runtimeArgs{}, fmt.Errorf("builtin:wasm runtime argument %q: unknown key %q (known: memory, engine)", arg, key)
		}
	}
	return out, nil
}

// Interpreted reports whether ENCLAVE_RUNTIME_ARGS args choose wazero's interpreter
// (engine=interpreter): prepare then validates the module and compiles nothing.
func Interpreted(args []string) (bool, error) {
	a, err := parseRuntimeArgs(args)
	return a.interpreter, err
}

// parseMemoryPages converts a size such as "64M" to wasm pages.
func parseMemoryPages(s string) (uint32, error) {
	num, shift := s, uint(0)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			num, shift = s[:n-1], 10
		case 'm', 'M':
			num, shift = s[:n-1], 20
		case 'g', 'G':
			num, shift = s[:n-1], 30
		}
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, fmt.Errorf("memory size %q: want a number of bytes with an optional K, M or G suffix", s)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (maxPages*pageSize)>>shift {
		return 0, fmt.Errorf("memory size %q: more than the 4G a wasm memory can address", s)
	}
	bytes := n << shift
	if bytes == 0 || bytes%pageSize != 0 {
		return 0, fmt.Errorf("memory size %q: must be a positive multiple of the 64K wasm page", s)
	}
	return uint32(bytes / pageSize), nil
}
