// Package bytesize reads and writes byte counts as the environment and messages give them
// ("64M", "64 MiB"). It never rounds: a count it cannot say exactly it says in bytes.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse parses a byte count with an optional binary suffix: "65536", "64K", "64M", "4G".
func Parse(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%s out of range", s)
	}
	return n * mult, nil
}

// Format renders a byte count for a message: "64 MiB", "1536 KiB", "100 bytes".
func Format(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
