package wasm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

func TestEvidenceImport(t *testing.T) {
	rt := newRuntime(t, newRootfs(t), nil)
	p := enclave.Process{Path: "/app/evidence.wasm", Args: []string{"evidence", "nonce-✓"}}
	var wantReportData [64]byte
	copy(wantReportData[:], "nonce-✓")

	t.Run("no hook", func(t *testing.T) {
		got := run(t, rt, p, nil)
		want := "short report data: errno 28\nsmall buffer: errno 52, need 0\n"
		if got.status != 1 || got.stdout != want {
			t.Errorf("got %+v, want status 1 stdout %q", got, want)
		}
	})
	t.Run("hook gets the report data, guest gets the evidence", func(t *testing.T) {
		var gotReportData [64]byte
		evidence := []byte("evidence bound to the report data")
		rt.SetEvidenceFunc(func(ctx context.Context, reportData [64]byte) ([]byte, error) {
			gotReportData = reportData
			return evidence, nil
		})
		got := run(t, rt, p, nil)
		want := "short report data: errno 28\n" +
			"small buffer: errno 68, need " + strconv.Itoa(len(evidence)) + "\n" +
			"evidence: errno 0, " + hex.EncodeToString(evidence) + "\n"
		if got.status != 0 || got.stdout != want {
			t.Errorf("got %+v, want stdout %q", got, want)
		}
		if gotReportData != wantReportData {
			t.Errorf("hook got report data %x, want %x", gotReportData, wantReportData)
		}
	})
	t.Run("hook failure is EIO", func(t *testing.T) {
		rt.SetEvidenceFunc(func(context.Context, [64]byte) ([]byte, error) { return nil, errors.New("no quote") })
		got := run(t, rt, p, nil)
		if want := "short report data: errno 28\nsmall buffer: errno 29, need 0\n"; got.status != 1 || got.stdout != want {
			t.Errorf("got %+v, want stdout %q", got, want)
		}
	})
}

// fakeMemory is a linear memory of a fixed size, enough to drive getEvidence's bounds checks.
type fakeMemory struct {
	api.Memory
	b []byte
}

func (m *fakeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.b)) {
		return nil, false
	}
	return m.b[off : off+n], true
}

func (m *fakeMemory) Write(off uint32, v []byte) bool {
	if uint64(off)+uint64(len(v)) > uint64(len(m.b)) {
		return false
	}
	copy(m.b[off:], v)
	return true
}

func (m *fakeMemory) WriteUint32Le(off, v uint32) bool {
	return m.Write(off, []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

func TestGetEvidenceBounds(t *testing.T) {
	calls := 0
	hook := func(context.Context, [64]byte) ([]byte, error) { calls++; return []byte("0123456789"), nil }
	tests := []struct {
		name                              string
		rdPtr, rdLen, out, outCap, lenPtr uint32
		want                              uint32
	}{
		{"ok", 0, 64, 100, 10, 200, errnoSuccess},
		{"report data out of bounds", 1000, 64, 100, 10, 200, errnoFault},
		{"report data wraps", 0xffffffff, 64, 100, 10, 200, errnoFault},
		{"report data length", 0, 32, 100, 10, 200, errnoInval},
		{"out buffer out of bounds", 0, 64, 250, 10, 200, errnoFault},
		{"out length pointer out of bounds", 0, 64, 100, 10, 254, errnoFault},
		{"out buffer too small", 0, 64, 100, 9, 200, errnoRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := &fakeMemory{b: make([]byte, 256)}
			calls = 0
			got := getEvidence(context.Background(), mem, hook, tt.rdPtr, tt.rdLen, tt.out, tt.outCap, tt.lenPtr)
			if got != tt.want {
				t.Fatalf("errno %d, want %d", got, tt.want)
			}
			if (tt.want == errnoFault || tt.want == errnoInval) && calls != 0 {
				t.Error("hook ran although the call was invalid")
			}
			if tt.want == errnoSuccess && string(mem.b[100:110]) != "0123456789" {
				t.Errorf("evidence not written: %q", mem.b[100:110])
			}
			if tt.want == errnoSuccess || tt.want == errnoRange {
				if n, _ := mem.Read(tt.lenPtr, 4); n[0] != 10 {
					t.Errorf("out_len %d, want 10", n[0])
				}
			}
		})
	}
}

func TestClockAndRandom(t *testing.T) {
	rt := newRuntime(t, newRootfs(t), nil)
	a := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "random"}}, nil)
	b := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "random"}}, nil)
	if len(a.stdout) != 33 || a.stdout == b.stdout || a.stdout == strings.Repeat("0", 32)+"\n" {
		t.Errorf("random bytes %q and %q", a.stdout, b.stdout)
	}
	got := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "time"}}, nil)
	var guest int64
	if _, err := fmt.Sscan(got.stdout, &guest); err != nil {
		t.Fatalf("time: %q", got.stdout)
	}
	// The guest reads the host's wall clock (not a fake fixed epoch as wazero's default).
	if d := time.Since(time.Unix(guest, 0)); d < -time.Hour || d > time.Hour {
		t.Errorf("guest clock %d is %v from the host's", guest, d)
	}
}
