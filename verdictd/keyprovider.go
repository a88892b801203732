package verdictd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ociconfig "github.com/containers/ocicrypt/config"
	ocikp "github.com/containers/ocicrypt/keywrap/keyprovider"
	kppb "github.com/containers/ocicrypt/utils/keyprovider"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/layerkey"
)

// KeyProviderName is the provider's name in ocicrypt's key provider configuration and in
// `--encryption-key provider:verdictd:<repository>/<type>/<tag>`; the wrapped key lands in the
// layer annotation org.opencontainers.image.enc.keys.provider.verdictd.
const KeyProviderName = "verdictd"

// ErrUnwrapRefused is the answer to UnWrapKey unless the provider was configured to unwrap.
var ErrUnwrapRefused = errors.New("layer keys are unwrapped only inside attested enclaves, which fetch the key-encryption key through the KBS protocol")

// Message bounds of the key provider. ocicrypt sends the whole encryption configuration of a copy
// (other recipients' public keys and certificates included) with each layer's options, so a
// request may be a few hundred KiB; an answer is one wrapped key (layerkey.MaxWrapped) or one
// layer's options, in base64 inside JSON.
const (
	maxKeyProviderRequest = 4 << 20
	maxKeyProviderAnswer  = 4 * layerkey.MaxWrapped
)

// KeyProviderConfig is what a KeyProvider wraps with.
type KeyProviderConfig struct {
	// Store holds the key-encryption keys, each a resource of exactly layerkey.KEKSize bytes.
	Store *Store
	// AllowUnwrap lets UnWrapKey unwrap with the KEK. Only for the tenant's own machine (to
	// decrypt an image with skopeo): whoever reaches the endpoint then gets every layer key.
	AllowUnwrap bool
	Log         *slog.Logger
}

// KeyProvider is verdictd's ocicrypt key provider (the gRPC service KeyProviderService): WrapKey
// wraps a layer's key with the KEK named by the key id in the encryption parameters, as
// package layerkey defines; UnWrapKey is refused unless AllowUnwrap. It never returns a layer key
// whose wrapped form did not authenticate under the KEK of its own kid.
type KeyProvider struct {
	kppb.UnimplementedKeyProviderServiceServer
	cfg KeyProviderConfig
}

// NewKeyProvider checks cfg and returns a KeyProvider.
func NewKeyProvider(cfg KeyProviderConfig) (*KeyProvider, error) {
	if cfg.Store == nil {
		return nil, errors.New("verdictd key provider: a resource store is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &KeyProvider{cfg: cfg}, nil
}

// WrapKey implements ocicrypt's "keywrap" operation.
func (k *KeyProvider) WrapKey(ctx context.Context, req *kppb.KeyProviderKeyWrapProtocolInput) (*kppb.KeyProviderKeyWrapProtocolOutput, error) {
	log := k.cfg.Log.With("step", "keywrap", "remote", remoteOf(ctx))
	in, err := decodeProtocolInput(req, ocikp.OpKeyWrap)
	if err != nil {
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	kid, err := keyIDOf(in.KeyWrapParams.Ec)
	if err != nil {
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	log = log.With("kid", kid)
	kek, err := k.kek(kid)
	if err != nil {
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	wrapped, err := layerkey.Wrap(kek, kid, in.KeyWrapParams.OptsData)
	clear(kek)
	if err != nil {
		err = status.Errorf(codes.InvalidArgument, "wrap the layer key with %s: %v", kid, err)
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	out, err := encodeProtocolOutput(ocikp.KeyProviderKeyWrapProtocolOutput{KeyWrapResults: ocikp.KeyWrapResults{Annotation: wrapped}})
	if err != nil {
		log.Error("refused", "reason", err.Error())
		return nil, err
	}
	log.Info("wrapped")
	return out, nil
}

// UnWrapKey implements ocicrypt's "keyunwrap" operation: refused (PermissionDenied) unless
// AllowUnwrap; then the annotation must be a layerkey wrapped key that opens under the KEK of its
// own kid.
func (k *KeyProvider) UnWrapKey(ctx context.Context, req *kppb.KeyProviderKeyWrapProtocolInput) (*kppb.KeyProviderKeyWrapProtocolOutput, error) {
	log := k.cfg.Log.With("step", "keyunwrap", "remote", remoteOf(ctx))
	if !k.cfg.AllowUnwrap {
		// The kid asked for, when the request names one, is worth the audit log; nothing is read.
		if in, err := decodeProtocolInput(req, ocikp.OpKeyUnwrap); err == nil {
			if w, err := layerkey.Parse(in.KeyUnwrapParams.Annotation); err == nil {
				log = log.With("kid", w.KID)
			}
		}
		err := status.Error(codes.PermissionDenied, ErrUnwrapRefused.Error())
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	in, err := decodeProtocolInput(req, ocikp.OpKeyUnwrap)
	if err != nil {
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	w, err := layerkey.Parse(in.KeyUnwrapParams.Annotation)
	if err != nil {
		err = status.Errorf(codes.InvalidArgument, "annotation %s: %v", AnnotationName, err)
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	log = log.With("kid", w.KID)
	kek, err := k.kek(w.KID)
	if err != nil {
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	opts, err := w.Unwrap(kek)
	clear(kek)
	if err != nil {
		err = status.Error(codes.PermissionDenied, err.Error())
		log.Warn("refused", "reason", err.Error())
		return nil, err
	}
	out, err := encodeProtocolOutput(ocikp.KeyProviderKeyWrapProtocolOutput{KeyUnwrapResults: ocikp.KeyUnwrapResults{OptsData: opts}})
	clear(opts)
	if err != nil {
		log.Error("refused", "reason", err.Error())
		return nil, err
	}
	log.Warn("unwrapped")
	return out, nil
}

// AnnotationName is the layer annotation ocicrypt stores this provider's wrapped key in (base64).
const AnnotationName = "org.opencontainers.image.enc.keys.provider." + KeyProviderName

// kek reads the key-encryption key kid from the store: exactly layerkey.KEKSize bytes.
func (k *KeyProvider) kek(kid string) ([]byte, error) {
	kek, err := k.cfg.Store.Read(kid)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "key-encryption key %s: %v", kid, err)
	case errors.Is(err, ErrRefusedPath):
		return nil, status.Errorf(codes.InvalidArgument, "key-encryption key %s: %v", kid, err)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "key-encryption key %s: %v", kid, err)
	}
	if len(kek) != layerkey.KEKSize {
		clear(kek)
		return nil, status.Errorf(codes.FailedPrecondition, "key-encryption key %s is %d bytes, want exactly %d (a raw AES-256 key)", kid, len(kek), layerkey.KEKSize)
	}
	return kek, nil
}

func decodeProtocolInput(req *kppb.KeyProviderKeyWrapProtocolInput, op ocikp.KeyProviderKeyWrapProtocolOperation) (*ocikp.KeyProviderKeyWrapProtocolInput, error) {
	var in ocikp.KeyProviderKeyWrapProtocolInput
	if err := json.Unmarshal(req.GetKeyProviderKeyWrapProtocolInput(), &in); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "key provider protocol input: %v", err)
	}
	if in.Operation != op {
		return nil, status.Errorf(codes.InvalidArgument, "key provider protocol input: op %q, want %q", in.Operation, op)
	}
	return &in, nil
}

func encodeProtocolOutput(out ocikp.KeyProviderKeyWrapProtocolOutput) (*kppb.KeyProviderKeyWrapProtocolOutput, error) {
	b, err := json.Marshal(out)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "key provider protocol output: %v", err)
	}
	return &kppb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: b}, nil
}

// keyIDOf returns the key id ocicrypt passes for this provider: `provider:verdictd:ID` becomes
// ec.Parameters["verdictd"] = [ID] (config.EncryptWithKeyProvider splits at the first colon after
// the provider's name), and `provider:verdictd` alone becomes ["Enabled"]. One layer key is
// wrapped under one KEK: several ids are refused rather than one of them chosen.
func keyIDOf(ec *ociconfig.EncryptConfig) (string, error) {
	var ids [][]byte
	if ec != nil {
		ids = ec.Parameters[KeyProviderName]
	}
	switch {
	case len(ids) == 0:
		return "", status.Errorf(codes.InvalidArgument, "no key id for provider %q in the encryption parameters: name the provider %q in the ocicrypt key provider configuration and encrypt with --encryption-key provider:%s:<repository>/<type>/<tag>", KeyProviderName, KeyProviderName, KeyProviderName)
	case len(ids) > 1:
		return "", status.Errorf(codes.InvalidArgument, "%d key ids for provider %q: a layer key is wrapped under one key-encryption key, give one --encryption-key provider:%s:<repository>/<type>/<tag>", len(ids), KeyProviderName, KeyProviderName)
	}
	kid := string(ids[0])
	if kid == "Enabled" {
		return "", status.Errorf(codes.InvalidArgument, "no key id after provider:%s: encrypt with --encryption-key provider:%s:<repository>/<type>/<tag>", KeyProviderName, KeyProviderName)
	}
	if err := kbs.CheckResourcePath(kid); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "key id: %v", err)
	}
	return kid, nil
}

func remoteOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if s := p.Addr.String(); s != "" {
			return p.Addr.Network() + ":" + s
		}
		return p.Addr.Network()
	}
	return ""
}

// Serve serves the key provider on l (plaintext gRPC, as ocicrypt dials it) until ctx ends, then
// stops gracefully: calls in progress finish (for at most 5 s), new ones are refused.
func (k *KeyProvider) Serve(ctx context.Context, l net.Listener) error {
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxKeyProviderRequest),
		grpc.MaxSendMsgSize(maxKeyProviderAnswer),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(64),
	)
	kppb.RegisterKeyProviderServiceServer(srv, k)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			t := time.AfterFunc(5*time.Second, srv.Stop)
			srv.GracefulStop()
			t.Stop()
		case <-done:
		}
	}()
	err := srv.Serve(l)
	close(done)
	<-stopped
	return err
}

// ParseKeyProviderAddr checks the address the key provider is to listen on and returns its
// network and address for net.Listen. The endpoint is plaintext and wraps with the tenant's KEKs
// for whoever reaches it, so only the tenant's own machine may: "unix:///ABSOLUTE/PATH", or
// IP:PORT with a loopback IP (127.0.0.0/8, [::1]). Names (even "localhost") are refused: what they
// resolve to is not known here.
func ParseKeyProviderAddr(addr string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return "", "", fmt.Errorf("key provider address %q: want unix:///ABSOLUTE/PATH (a clean absolute path)", addr)
		}
		return "unix", path, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("key provider address %q: want a loopback IP:PORT or unix:///PATH: %v", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", fmt.Errorf("key provider address %q: port %q is not a number from 0 to 65535", addr, port)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return "", "", fmt.Errorf("key provider address %q: host %q is not an IP address; the plaintext key provider listens only on loopback (127.0.0.1, [::1]) or a unix socket", addr, host)
	}
	if !ip.Unmap().IsLoopback() {
		return "", "", fmt.Errorf("key provider address %q: %s is not a loopback address; the key provider speaks plaintext gRPC and wraps with the tenant's keys for whoever reaches it, so it listens only on loopback (127.0.0.1, [::1]) or a unix socket", addr, host)
	}
	return "tcp", net.JoinHostPort(ip.Unmap().String(), port), nil
}

// ListenKeyProvider listens on an address ParseKeyProviderAddr accepted. A unix socket is made
// with mode 0600 (the process umask is narrowed while it is bound, so there is no moment at which
// others may connect): call it at start, before other goroutines create files.
func ListenKeyProvider(network, address string) (net.Listener, error) {
	if network != "unix" {
		return net.Listen(network, address)
	}
	old := unix.Umask(0o177)
	l, err := net.Listen(network, address)
	unix.Umask(old)
	return l, err
}

// KeyProviderAddr is l's address as ocicrypt's key provider configuration names it ("grpc"):
// IP:PORT, or unix:///PATH.
func KeyProviderAddr(l net.Listener) string {
	if a := l.Addr(); a.Network() == "unix" {
		return "unix://" + a.String()
	}
	return l.Addr().String()
}
