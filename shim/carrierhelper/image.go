package carrierhelper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
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
func LookupImage(ctx context.Context, address, ns, id, criImageName string) (*enclavemanifest.Image, error) {
	if address == "" || ns == "" || id == "" {
		return nil, errors.New("containerd address, namespace and container id are all needed to look up the image")
	}
	// The conversion runs in rune-carrier-helper, a short-lived helper: grpc-go and containerd's
	// own API stubs cost the long-lived shim nothing.
	conn, err := grpc.NewClient("unix://"+strings.TrimPrefix(address, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReply)))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", address, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, namespaceHeader, ns)

	c, err := containersapi.NewContainersClient(conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, err)
	}
	name := c.GetContainer().GetImage()
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
	images := imagesapi.NewImagesClient(conn)
	var errs []error
	for _, name := range names {
		img, err := images.Get(ctx, &imagesapi.GetImageRequest{Name: name})
		if err != nil {
			errs = append(errs, fmt.Errorf("image %q: %w", name, err))
			continue
		}
		d := img.GetImage().GetTarget().GetDigest()
		if _, err := digest.Parse(d); err != nil {
			return nil, fmt.Errorf("containerd: image %q has no valid digest (%q): %v", name, d, err)
		}
		return &enclavemanifest.Image{Reference: name, Digest: d}, nil
	}
	return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, errors.Join(errs...))
}
