package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/urfave/cli"
)

var attestCommand = cli.Command{
	Name:  "attest",
	Usage: "get attestation evidence from a running enclave container",
	ArgsUsage: `<container-id>

Where "<container-id>" is the name of an enclave container.`,
	Description: `The attest command asks the enclave for evidence whose report data binds the
nonce (up to 64 bytes, hex; a random one when not given). It prints a JSON
object with the TEE type, enclave runtime, measurement, report data and the
evidence (base64); --output also writes the raw evidence to a file.`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "nonce", Usage: "hex nonce to bind into the report data (at most 64 bytes)"},
		cli.StringFlag{Name: "output, o", Usage: "write the raw evidence to this file"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, exactArgs); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		root := c.GlobalString("root")
		est, err := enclavehost.LoadState(root, container.ID())
		if err != nil {
			return err
		}
		if est == nil {
			return fmt.Errorf("container %s is not an enclave container: it has no evidence to give", container.ID())
		}
		var nonce []byte
		if h := c.String("nonce"); h != "" {
			if nonce, err = hex.DecodeString(h); err != nil {
				return fmt.Errorf("--nonce: %w", err)
			}
			if len(nonce) > 64 {
				return fmt.Errorf("--nonce is %d bytes: at most 64", len(nonce))
			}
		} else {
			nonce = make([]byte, 32)
			if _, err := rand.Read(nonce); err != nil {
				return err
			}
		}
		resp, err := agent.Attest(context.Background(), enclavehost.Socket(root, container.ID()), nonce)
		if err != nil {
			return fmt.Errorf("attest %s: %w", container.ID(), err)
		}
		if len(resp.Evidence) == 0 {
			return errors.New("the enclave returned no evidence")
		}
		if out := c.String("output"); out != "" {
			if err := os.WriteFile(out, resp.Evidence, 0o644); err != nil {
				return err
			}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"id":          container.ID(),
			"tee":         resp.TEE,
			"runtime":     resp.Runtime,
			"measurement": resp.Measurement,
			"report_data": hex.EncodeToString(resp.ReportData),
			"evidence":    resp.Evidence,
		})
	},
}
