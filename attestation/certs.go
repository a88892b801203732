package attestation

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// This file is the module's one reader of PEM certificates: evidence's certificate chains (DCAP,
// SNP), trust anchors and CA files (shelter, verdictd, the manifest signing service).

// maxCertFile bounds a certificate file: real ones are a few KiB, and a device or a huge file
// given by mistake must not be read whole.
const maxCertFile = 16 << 20

// ParsePEMCertificates decodes consecutive PEM CERTIFICATE blocks. Anything but blocks and
// whitespace between them is an error: a chain with junk in it is not what the signer produced.
func ParsePEMCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	// Quote libraries of 2021 wrote chains with no line break between blocks, which pem.Decode skips.
	rest := bytes.ReplaceAll(b, []byte("-----END CERTIFICATE----------BEGIN"), []byte("-----END CERTIFICATE-----\n-----BEGIN"))
	for len(bytes.TrimSpace(rest)) != 0 {
		// pem.Decode silently skips text before a block; refuse it instead.
		if begin := bytes.Index(rest, []byte("-----BEGIN")); begin < 0 || len(bytes.TrimSpace(rest[:begin])) != 0 {
			return nil, fmt.Errorf("non-PEM data after certificate %d", len(certs))
		}
		block, next := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("malformed PEM block after certificate %d", len(certs))
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, not a CERTIFICATE (want CERTIFICATE blocks only)", len(certs)+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
		rest = next
	}
	return certs, nil
}

// LoadCertificates reads certificates (trust anchors, CAs): each file holds PEM certificates or
// one DER certificate, and at least one.
func LoadCertificates(paths []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		b, err := readCertFile(p)
		if err != nil {
			return nil, err
		}
		if bytes.Contains(b, []byte("-----BEGIN")) {
			certs, err := ParsePEMCertificates(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if len(certs) == 0 {
				return nil, fmt.Errorf("%s: no certificate", p)
			}
			out = append(out, certs...)
			continue
		}
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("%s: neither PEM nor DER certificate: %w", p, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// LoadCertPool is LoadCertificates of one file, as a pool (the CA of a PCCS, of a signing
// service, of its clients). A file without a certificate is an error, so that an empty pool never
// means "trust nothing" by accident.
func LoadCertPool(path string) (*x509.CertPool, error) {
	certs, err := LoadCertificates([]string{path})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func readCertFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(b) > maxCertFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, maxCertFile)
	}
	return b, nil
}
