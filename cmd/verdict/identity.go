package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/internal/atomicfile"
	"github.com/inclavare-containers/inclavare-go/internal/climain"
	"github.com/inclavare-containers/inclavare-go/kbs"
)

// tlsIdentity writes a self-signed TLS identity for verdictd and prints its pin: an enclave
// trusts the broker by that pin (ENCLAVE_KBS_PIN), so no CA is needed.
func tlsIdentity(c *cli.Context) error {
	if c.NArg() != 2 {
		return climain.UsageError("tls-identity takes two arguments, CERT and KEY")
	}
	certPath, keyPath := c.Args().Get(0), c.Args().Get(1)
	hosts := c.StringSlice("host")
	if len(hosts) == 0 {
		return climain.UsageError("tls-identity needs at least one --host (an IP address or DNS name clients use)")
	}
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: an identity is never overwritten", p)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "verdictd"},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(c.Duration("validity")),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !strings.ContainsAny(h, " /:") {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		} else {
			return climain.UsageError("--host %q: want an IP address or a DNS name", h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	fmt.Println(kbs.PinOf(cert))
	return nil
}

// pin prints the ENCLAVE_KBS_PIN of the broker certificate in a PEM file (its first certificate).
func pin(c *cli.Context) error {
	if c.NArg() != 1 {
		return climain.UsageError("pin takes one argument, the broker's PEM certificate")
	}
	data, err := readFile(c.Args().First(), 1<<20)
	if err != nil {
		return err
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return errors.New(c.Args().First() + ": no PEM certificate")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Args().First(), err)
		}
		fmt.Println(kbs.PinOf(cert))
		return nil
	}
}
