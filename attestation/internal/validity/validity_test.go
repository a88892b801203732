package validity

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestWindow: the earliest end wins, inputs starting after Now bound it, those already valid do not.
func TestWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := Window{Now: now}
	w.Ends(now.Add(48 * time.Hour))
	w.Chain([]*x509.Certificate{{NotAfter: now.Add(72 * time.Hour)}, {NotAfter: now.Add(24 * time.Hour)}})
	if want := now.Add(24 * time.Hour); !w.Until.Equal(want) {
		t.Fatalf("after the chain: %v, want %v", w.Until, want)
	}
	w.Certificates([]*x509.Certificate{{NotBefore: now.Add(-time.Hour)}, {NotBefore: now}})
	if want := now.Add(24 * time.Hour); !w.Until.Equal(want) {
		t.Fatalf("inputs already valid moved it: %v", w.Until)
	}
	w.Starts(now.Add(12 * time.Hour))
	if want := now.Add(12 * time.Hour); !w.Until.Equal(want) {
		t.Fatalf("an input starting later: %v, want %v", w.Until, want)
	}
	w.Ends(now.Add(100 * time.Hour))
	if want := now.Add(12 * time.Hour); !w.Until.Equal(want) {
		t.Fatalf("a later end moved it: %v", w.Until)
	}
}
