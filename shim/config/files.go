package config

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// CheckFiles looks at every file the configuration names without parsing any key or
// certificate: it is there, a regular file, and holds PEM blocks of the kinds the key says.
// A missing or misplaced file fails here, at every create; the keys and certificates
// themselves are parsed where they are used, by the conversion (rune-carrier-helper) and by rune.
func (c *Config) CheckFiles() error {
	var errs []error
	if c.Rune.Path != "" {
		if err := checkExecutable(c.Rune.Path); err != nil {
			errs = append(errs, fmt.Errorf("rune.path: %w", err))
		}
	}
	check := func(key, path string, one bool, kinds ...string) {
		if path == "" {
			return
		}
		if err := checkPEM(path, one, kinds...); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	check("rune.manifest_trust", c.Rune.ManifestTrust, false, "PUBLIC KEY", "CERTIFICATE")
	check("signing.key_file", c.Signing.KeyFile, true, privateKeyBlocks...)
	if svc := c.Signing.Service; svc != nil {
		check("signing.service.client_cert", svc.ClientCert, false, "CERTIFICATE")
		check("signing.service.client_key", svc.ClientKey, true, privateKeyBlocks...)
		check("signing.service.ca_cert", svc.CACert, false, "CERTIFICATE")
	}
	return errors.Join(errs...)
}

// privateKeyBlocks are the PEM forms of a private key Go reads.
var privateKeyBlocks = []string{"RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"}

// checkPEM accepts a file of PEM blocks of the given kinds (exactly one block when one).
func checkPEM(path string, one bool, kinds ...string) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		n++
		if !slices.Contains(kinds, block.Type) {
			return fmt.Errorf("%s: PEM block %d is %q, want %s", path, n, block.Type, strings.Join(kinds, " or "))
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%s: no PEM block", path)
	case len(bytes.TrimSpace(data)) > 0:
		return fmt.Errorf("%s: data after the last PEM block", path)
	case one && n > 1:
		return fmt.Errorf("%s: %d PEM blocks, want one", path, n)
	}
	return nil
}

// ResolveRune returns the rune binary the shim drives: rune.path when set; else "rune"
// in the directory of the shim binary shimExe (the shim and rune are installed
// together); else rune on PATH.
func (c *Config) ResolveRune(shimExe string) (string, error) {
	if c.Rune.Path != "" {
		if err := checkExecutable(c.Rune.Path); err != nil {
			return "", fmt.Errorf("rune.path: %w", err)
		}
		return c.Rune.Path, nil
	}
	if shimExe != "" {
		beside := filepath.Join(filepath.Dir(shimExe), "rune")
		if checkExecutable(beside) == nil {
			return beside, nil
		}
	}
	p, err := exec.LookPath("rune")
	if err != nil {
		return "", fmt.Errorf("rune not found next to %s nor on PATH; set rune.path in the shim configuration", shimExe)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("absolute path of %s: %w", p, err)
	}
	return abs, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
