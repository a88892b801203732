package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/manifest"
)

// CheckFiles reads every file the configuration names and checks it holds what the key
// says: a private key, a certificate and its key, CA certificates. A bad file fails here,
// at create, rather than when the first image is converted.
func (c *Config) CheckFiles() error {
	var errs []error
	if c.Rune.Path != "" {
		if err := checkExecutable(c.Rune.Path); err != nil {
			errs = append(errs, fmt.Errorf("rune.path: %w", err))
		}
	}
	if c.Rune.ManifestTrust != "" {
		// The same reader rune uses, so a file the shim accepts is one rune accepts.
		if _, err := manifest.LoadTrust(c.Rune.ManifestTrust); err != nil {
			errs = append(errs, fmt.Errorf("rune.manifest_trust: %w", err))
		}
	}
	if c.Signing.KeyFile != "" {
		if err := checkPrivateKeyFile(c.Signing.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("signing.key_file: %w", err))
		}
	}
	if svc := c.Signing.Service; svc != nil {
		if _, err := tls.LoadX509KeyPair(svc.ClientCert, svc.ClientKey); err != nil {
			errs = append(errs, fmt.Errorf("signing.service.client_cert/client_key: %w", err))
		}
		if svc.CACert != "" {
			if _, err := LoadCertPool(svc.CACert); err != nil {
				errs = append(errs, fmt.Errorf("signing.service.ca_cert: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkPrivateKeyFile accepts exactly one PEM private key block in a form Go can parse.
func checkPrivateKeyFile(path string) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s: no PEM block", path)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return fmt.Errorf("%s: more than one PEM block", path)
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		_, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		_, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		_, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return fmt.Errorf("%s: PEM block %q is not a private key (want RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)", path, block.Type)
	}
	if err != nil {
		return fmt.Errorf("%s: parse %s: %w", path, block.Type, err)
	}
	return nil
}

// LoadCertPool reads PEM CA certificates; a file with no certificate is an error, so an
// empty pool can never mean "trust nothing" by accident or "trust the system" by surprise.
func LoadCertPool(path string) (*x509.CertPool, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for len(data) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %q is not a CERTIFICATE", path, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
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
