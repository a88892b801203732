package bytesize

import "testing"

func TestFormatAndParse(t *testing.T) {
	for s, n := range map[string]int64{"100": 100, "64K": 64 << 10, "128M": 128 << 20, "4G": 4 << 30} {
		if got, err := Parse(s); err != nil || got != n {
			t.Errorf("Parse(%q) = %d, %v", s, got, err)
		}
	}
	for n, s := range map[int64]string{100: "100 bytes", 64 << 10: "64 KiB", 128 << 20: "128 MiB", 4 << 30: "4 GiB", 1536: "1536 bytes"} {
		if got := Format(n); got != s {
			t.Errorf("Format(%d) = %q, want %q", n, got, s)
		}
	}
}
