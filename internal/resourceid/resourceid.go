// Package resourceid checks the names of key broker resources, "<repository>/<type>/<tag>", for
// every side that uses them (the enclave settings, the kbs client, sealed files, wrapped layer
// keys) without linking any of them to the others.
package resourceid

import (
	"fmt"
	"strings"
)

// Check checks "<repository>/<type>/<tag>" as the broker names resources: three components of 1
// to 255 bytes of letters, digits, '.', '_' and '-', none starting with '.' (so none is "." or
// ".." and none can name a hidden file in the broker's resource directory).
func Check(id string) error {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return fmt.Errorf("resource %q: want <repository>/<type>/<tag>", id)
	}
	for _, c := range parts {
		if c == "" || len(c) > 255 {
			return fmt.Errorf("resource %q: component %q must be 1 to 255 bytes", id, c)
		}
		if c[0] == '.' {
			return fmt.Errorf("resource %q: component %q starts with '.'", id, c)
		}
		for i := 0; i < len(c); i++ {
			ch := c[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
				return fmt.Errorf("resource %q: component %q has %q (allowed: letters, digits, '.', '_', '-')", id, c, ch)
			}
		}
	}
	return nil
}
