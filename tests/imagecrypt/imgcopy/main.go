// Command imgcopy is `skopeo --insecure-policy copy` reduced to what the image encryption tests
// use: OCI layouts and archives, --encryption-key, --encrypt-layer and --decryption-key, on the
// libraries skopeo is a command line for (go.podman.io/image/v5's copy.Image and ocicrypt's
// helpers, which parse the keys exactly as skopeo does). It exists because Debian 12's skopeo
// (1.9.3) is built against ocicrypt 1.0.3, which predates ocicrypt's key provider protocol and
// rejects `provider:` keys ("Provided protocol not recognized"), and a newer skopeo cannot be
// installed here. Its command line is a subset of skopeo's, so the tests run unchanged with a
// real skopeo that has key providers ($INCLAVARE_SKOPEO). It is a test tool only; it accepts
// any image (no signature policy).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	encconfig "github.com/containers/ocicrypt/config"
	enchelpers "github.com/containers/ocicrypt/helpers"
	"go.podman.io/image/v5/copy"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type ints []int

func (s *ints) String() string { return fmt.Sprint(*s) }
func (s *ints) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return err
	}
	*s = append(*s, n)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "imgcopy: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 || args[0] != "--insecure-policy" || args[1] != "copy" {
		return errors.New("usage: imgcopy --insecure-policy copy [--quiet] [--encryption-key K]... [--encrypt-layer N]... [--decryption-key K]... SRC DST")
	}
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	quiet := fs.Bool("quiet", false, "suppress output information when copying images")
	var encKeys, decKeys stringList
	var encLayers ints
	fs.Var(&encKeys, "encryption-key", "key with the encryption protocol to use (e.g. provider:NAME:PARAMS)")
	fs.Var(&encLayers, "encrypt-layer", "0-indexed layer to encrypt (negative counts from the end); default all")
	fs.Var(&decKeys, "decryption-key", "key needed to decrypt the image")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("want SRC and DST, got %q", fs.Args())
	}
	src, err := parseRef(fs.Arg(0))
	if err != nil {
		return err
	}
	dst, err := parseRef(fs.Arg(1))
	if err != nil {
		return err
	}
	opts := &copy.Options{ReportWriter: os.Stdout, SourceCtx: &types.SystemContext{}, DestinationCtx: &types.SystemContext{}}
	if *quiet {
		opts.ReportWriter = io.Discard
	}
	if len(encKeys) > 0 && len(decKeys) > 0 {
		return errors.New("--encryption-key and --decryption-key cannot be given together")
	}
	if len(encLayers) > 0 && len(encKeys) == 0 {
		return errors.New("--encrypt-layer needs --encryption-key")
	}
	if len(encKeys) > 0 {
		cc, err := enchelpers.CreateCryptoConfig(encKeys, nil)
		if err != nil {
			return fmt.Errorf("invalid encryption keys: %w", err)
		}
		layers := []int(encLayers)
		opts.OciEncryptLayers = &layers // empty: every layer
		opts.OciEncryptConfig = encconfig.CombineCryptoConfigs([]encconfig.CryptoConfig{cc}).EncryptConfig
	}
	if len(decKeys) > 0 {
		cc, err := enchelpers.CreateCryptoConfig(nil, decKeys)
		if err != nil {
			return fmt.Errorf("invalid decryption keys: %w", err)
		}
		opts.OciDecryptConfig = encconfig.CombineCryptoConfigs([]encconfig.CryptoConfig{cc}).DecryptConfig
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer policy.Destroy()
	_, err = copy.Image(context.Background(), policy, dst, src, opts)
	return err
}

// parseRef reads an oci:PATH[:REF] or oci-archive:PATH[:REF] image name.
func parseRef(name string) (types.ImageReference, error) {
	transport, ref, ok := strings.Cut(name, ":")
	if !ok {
		return nil, fmt.Errorf("image name %q: want oci:PATH[:REF] or oci-archive:PATH[:REF]", name)
	}
	switch transport {
	case "oci":
		return ocilayout.Transport.ParseReference(ref)
	case "oci-archive":
		return ociarchive.Transport.ParseReference(ref)
	}
	return nil, fmt.Errorf("image name %q: transport %q is not supported here (oci, oci-archive)", name, transport)
}
