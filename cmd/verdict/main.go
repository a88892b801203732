// Command verdict is the tenant's tool beside verdictd: `verdict keygen` makes a sealing key,
// `verdict seal` encrypts a wasm module or an executable with it for a key broker resource and
// `verdict inspect` prints a sealed file's header (docs/sealed.md); `verdict tls-identity` makes
// verdictd's TLS identity and `verdict pin` prints the pin enclaves trust it by. The tenant gives the same
// key to verdictd as that resource (--resources DIR/<repository>/<type>/<tag>); an enclave gets
// it only after attesting. Exit status: 0 success, 1 an error, 2 a usage error.
package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli"

	"github.com/inclavare-containers/inclavare-go/enclaveimage"
	"github.com/inclavare-containers/inclavare-go/internal/atomicfile"
	"github.com/inclavare-containers/inclavare-go/internal/climain"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

var version = "0.1.0-dev"

func main() {
	app := cli.NewApp()
	app.Name = "verdict"
	app.Version = version
	app.Usage = "the tenant's tool: sealed workloads, the key broker's identity"
	app.Commands = []cli.Command{
		{
			Name:      "keygen",
			Usage:     "write a fresh 32-byte sealing key (mode 0600)",
			ArgsUsage: "FILE",
			Action:    keygen,
		},
		{
			Name:      "seal",
			Usage:     "encrypt IN (a wasm module, an executable) with the key in --key for the broker resource --key-id",
			ArgsUsage: "IN OUT",
			Flags: []cli.Flag{
				cli.StringFlag{Name: "key-id", Usage: "the key broker resource holding the key, <repository>/<type>/<tag>"},
				cli.StringFlag{Name: "key", Usage: "file of the raw 32-byte key (the bytes the broker serves)"},
			},
			Action: seal,
		},
		{
			Name:      "enclave-layers",
			Usage:     "turn an OCI layout whose layers were encrypted for verdictd into one any engine unpacks while the layers stay encrypted (only the enclave decrypts them)",
			ArgsUsage: "IN-LAYOUT OUT-LAYOUT",
			Flags: []cli.Flag{
				cli.StringFlag{Name: "target", Usage: "the directory each encrypted layer is unpacked under in the enclave, comma-separated, one per encrypted layer (e.g. /app)"},
			},
			Action: enclaveLayers,
		},
		{
			Name:      "tls-identity",
			Usage:     "write a self-signed TLS certificate and key for verdictd and print its pin (ENCLAVE_KBS_PIN)",
			ArgsUsage: "CERT KEY",
			Flags: []cli.Flag{
				cli.StringSliceFlag{Name: "host", Usage: "an IP address or DNS name clients reach verdictd by (repeatable)"},
				cli.DurationFlag{Name: "validity", Value: 365 * 24 * time.Hour, Usage: "how long the certificate is valid"},
			},
			Action: tlsIdentity,
		},
		{
			Name:      "pin",
			Usage:     "print the pin (ENCLAVE_KBS_PIN) of a broker's PEM certificate",
			ArgsUsage: "CERT",
			Action:    pin,
		},
		{
			Name:      "inspect",
			Usage:     "print the header of a sealed file as JSON (decrypts nothing)",
			ArgsUsage: "FILE",
			Action:    inspect,
		},
	}
	climain.Run(app)
}

func keygen(c *cli.Context) error {
	if c.NArg() != 1 {
		return climain.UsageError("keygen takes one argument, the key file")
	}
	key := make([]byte, sealed.KeySize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	path := c.Args().First()
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists: a key is never overwritten", path)
	}
	return atomicfile.Write(path, key, 0o600)
}

func seal(c *cli.Context) error {
	if c.NArg() != 2 {
		return climain.UsageError("seal takes two arguments, IN and OUT")
	}
	keyID, keyFile := c.String("key-id"), c.String("key")
	if keyID == "" || keyFile == "" {
		return climain.UsageError("seal needs --key-id and --key")
	}
	key, err := readFile(keyFile, sealed.KeySize+1)
	if err != nil {
		return err
	}
	in, out := c.Args().Get(0), c.Args().Get(1)
	info, err := os.Stat(in)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", in)
	}
	plain, err := readFile(in, sealed.MaxPlaintext+1)
	if err != nil {
		return err
	}
	if sealed.IsSealed(plain) {
		return fmt.Errorf("%s is sealed already", in)
	}
	data, err := sealed.Seal(plain, key, keyID)
	if err != nil {
		return fmt.Errorf("seal %s: %w", in, err)
	}
	// The sealed file keeps the permissions (an executable stays executable).
	return atomicfile.Write(out, data, info.Mode().Perm())
}

func inspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return climain.UsageError("inspect takes one argument, the sealed file")
	}
	data, err := readFile(c.Args().First(), int64(sealed.MaxPlaintext+sealed.HeadSize+64))
	if err != nil {
		return err
	}
	f, err := sealed.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Args().First(), err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(f.Header)
}

// readFile reads at most max bytes of path; more is an error.
func readFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return data, nil
}

func enclaveLayers(c *cli.Context) error {
	if c.NArg() != 2 {
		return climain.UsageError("enclave-layers takes two arguments, IN-LAYOUT and OUT-LAYOUT")
	}
	if c.String("target") == "" {
		return climain.UsageError("enclave-layers needs --target")
	}
	res, err := enclaveimage.Convert(c.Args().Get(0), c.Args().Get(1), strings.Split(c.String("target"), ","))
	if err != nil {
		return err
	}
	fmt.Printf("ENCLAVE_LAYERS=%s\nmanifest %s\n", res.Layers, res.Manifest)
	return nil
}
