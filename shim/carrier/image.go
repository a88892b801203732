package carrier

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/inclavare-containers/inclavare-go/manifest"
)

const (
	// lookupTimeout bounds the questions to containerd; without an answer the conversion is
	// simply not cached.
	lookupTimeout = 10 * time.Second
	// maxReply bounds one answer from containerd (a container record holds its whole spec).
	maxReply = 4 << 20
	// AnnotationCRIImageName is where containerd's CRI plugin names a container's image in its
	// OCI spec. CRI does not record the image in the container itself, so it is the fallback.
	AnnotationCRIImageName = "io.kubernetes.cri.image-name"
	// namespaceHeader is the gRPC metadata key containerd reads the namespace from
	// (containerd's namespaces.GRPCHeader).
	namespaceHeader = "containerd-namespace"
)

// LookupImage asks containerd, over its gRPC socket at address, which image container id of
// namespace ns was made from and what that image's digest is (the images API: the target
// descriptor's digest, a manifest or an index). The image's name comes from the containers
// API (the container's image, which `ctr run` and Go clients record) or, when the container
// records none, from criImageName (the spec's io.kubernetes.cri.image-name annotation, which
// CRI sets; a name as the user wrote it is also tried in its normalized form). The digest
// names the image's content as containerd pulled it, so equal digests mean equal root file
// systems as unpacked; rune measures the workload again at every create in any case, so a
// wrong answer here can cost a conversion, never let a different workload run.
func LookupImage(ctx context.Context, address, ns, id, criImageName string) (*manifest.Image, error) {
	if address == "" || ns == "" || id == "" {
		return nil, errors.New("containerd address, namespace and container id are all needed to look up the image")
	}
	c := newContainerdClient(address, ns)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	defer cancel()
	reply, err := c.call(ctx, "/containerd.services.containers.v1.Containers/Get", protoString(1, id))
	if err != nil {
		return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, err)
	}
	name, err := containerImage(reply)
	if err != nil {
		return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, err)
	}
	names := []string{name}
	if name == "" {
		if criImageName == "" {
			return nil, fmt.Errorf("containerd: container %s/%s records no image, and its spec has no %s annotation", ns, id, AnnotationCRIImageName)
		}
		names = []string{criImageName}
		if n, err := reference.ParseDockerRef(criImageName); err == nil && n.String() != criImageName {
			names = append(names, n.String())
		}
	}
	var errs []error
	for _, name := range names {
		reply, err := c.call(ctx, "/containerd.services.images.v1.Images/Get", protoString(1, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("image %q: %w", name, err))
			continue
		}
		d, err := imageDigest(reply)
		if err != nil {
			return nil, fmt.Errorf("containerd: image %q: %w", name, err)
		}
		if _, err := digest.Parse(d); err != nil {
			return nil, fmt.Errorf("containerd: image %q has no valid digest (%q): %v", name, d, err)
		}
		return &manifest.Image{Reference: name, Digest: d}, nil
	}
	return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, errors.Join(errs...))
}

// containerdClient makes unary gRPC calls to containerd: HTTP/2 without TLS on its unix
// socket, each message a 5-byte prefix (compression flag, big-endian length) and protobuf,
// the status in the grpc-status trailer. It is written on net/http (already in the shim) and
// protowire because a gRPC library would add megabytes to every shim process for two calls.
type containerdClient struct {
	tr *http.Transport
	hc *http.Client
	ns string
}

func newContainerdClient(address, ns string) *containerdClient {
	path := strings.TrimPrefix(address, "unix://")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		Protocols: new(http.Protocols),
	}
	tr.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, as gRPC speaks it
	return &containerdClient{tr: tr, hc: &http.Client{Transport: tr}, ns: ns}
}

func (c *containerdClient) close() { c.tr.CloseIdleConnections() }

// grpcCodes names the gRPC status codes containerd answers with.
var grpcCodes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
	"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func (c *containerdClient) call(ctx context.Context, method string, msg []byte) ([]byte, error) {
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://containerd"+method, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set(namespaceHeader, c.ns)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	// A reply with a message has its status in the trailers; an error alone, in the headers.
	status, message := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if status != "0" {
		return nil, grpcError(status, message)
	}
	return unframe(data)
}

func grpcError(status, message string) error {
	if m, err := url.PathUnescape(message); err == nil {
		message = m
	}
	code := status
	for i, name := range grpcCodes {
		if status == fmt.Sprint(i) {
			code = name
		}
	}
	if status == "" {
		code = "no status"
	}
	return fmt.Errorf("%s (gRPC %s)", message, code)
}

// unframe returns the one uncompressed message of a gRPC reply body.
func unframe(data []byte) ([]byte, error) {
	if len(data) > maxReply {
		return nil, fmt.Errorf("reply larger than %d bytes", maxReply)
	}
	if len(data) < 5 {
		return nil, fmt.Errorf("reply of %d bytes is not a gRPC message", len(data))
	}
	if data[0] != 0 {
		return nil, errors.New("reply is compressed; none was asked for")
	}
	if n := binary.BigEndian.Uint32(data[1:5]); uint64(n) != uint64(len(data)-5) {
		return nil, fmt.Errorf("reply frame says %d bytes, holds %d", n, len(data)-5)
	}
	return data[5:], nil
}

// protoString encodes a message whose only field, num, is the string s.
func protoString(num protowire.Number, s string) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// protoField returns the value of the last length-delimited field num of msg (proto3: the last
// occurrence of a scalar wins), or nil when msg has none.
func protoField(msg []byte, num protowire.Number) ([]byte, error) {
	var val []byte
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, fmt.Errorf("protobuf: %w", protowire.ParseError(l))
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return nil, fmt.Errorf("protobuf field %d: %w", num, protowire.ParseError(l))
			}
			val, msg = v, msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return nil, fmt.Errorf("protobuf field %d: %w", n, protowire.ParseError(l))
		}
		msg = msg[l:]
	}
	return val, nil
}

// protoPath follows nested length-delimited fields.
func protoPath(msg []byte, path ...protowire.Number) ([]byte, error) {
	for _, num := range path {
		var err error
		if msg, err = protoField(msg, num); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// containerImage reads GetContainerResponse.container(1).image(3).
func containerImage(reply []byte) (string, error) {
	b, err := protoPath(reply, 1, 3)
	return string(b), err
}

// imageDigest reads GetImageResponse.image(1).target(3).digest(2).
func imageDigest(reply []byte) (string, error) {
	b, err := protoPath(reply, 1, 3, 2)
	return string(b), err
}
