package carrierhelper

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// CheckFiles reads every file the shim configuration names and checks it holds what the key
// says: a private key, a certificate and its key, CA certificates, keys rune trusts. The
// shim itself only looks at their PEM structure (config.CheckFiles); this parses them, before
// a conversion uses any.
func CheckFiles(c *config.Config) error {
	var errs []error
	if c.Rune.ManifestTrust != "" {
		// The same reader rune uses, so a file the shim accepts is one rune accepts.
		if _, err := enclavemanifest.LoadTrust(c.Rune.ManifestTrust); err != nil {
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
			if _, err := attestation.LoadCertPool(svc.CACert); err != nil {
				errs = append(errs, fmt.Errorf("signing.service.ca_cert: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkPrivateKeyFile accepts exactly one PEM private key block in a form Go can parse.
func checkPrivateKeyFile(path string) error {
	data, err := readConfigFile(path)
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

// readConfigFile reads a file the configuration names: a regular file (never a FIFO, which
// would block), of bounded size.
func readConfigFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxConfigFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxConfigFile)
	}
	return os.ReadFile(path)
}

// maxConfigFile bounds a key or certificate file.
const maxConfigFile = 1 << 20
