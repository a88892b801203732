package carrier

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/namespaces"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inclavare-containers/inclavare-go/manifest"
)

// lookupTimeout bounds the questions to containerd; without an answer the conversion is
// simply not cached.
const lookupTimeout = 10 * time.Second

// ContainerdAddress is containerd's gRPC socket as containerd gave it to this shim: the
// shim's -address flag, else $GRPC_ADDRESS (set by containerd for its shims). Empty when
// neither is known.
func ContainerdAddress() string {
	if f := flag.Lookup("address"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	return os.Getenv("GRPC_ADDRESS")
}

// LookupImage asks containerd, over its gRPC socket at address, which image container id of
// namespace ns was made from (the containers API: the container's image name) and what that
// image's digest is (the images API: the target descriptor's digest, a manifest or an index).
// This is the same record for `ctr run` and for CRI, which both create containerd containers
// from a named image. The digest names the image's content as containerd pulled it, so equal
// digests mean equal root file systems as unpacked; the rootfs is measured again by rune at
// every create anyway.
func LookupImage(ctx context.Context, address, ns, id string) (*manifest.Image, error) {
	if address == "" || ns == "" || id == "" {
		return nil, errors.New("containerd address, namespace and container id are all needed to look up the image")
	}
	target := address
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.WithoutCancel(ctx), ns), lookupTimeout)
	defer cancel()
	c, err := containersapi.NewContainersClient(conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, err)
	}
	name := c.GetContainer().GetImage()
	if name == "" {
		return nil, fmt.Errorf("containerd: container %s/%s records no image", ns, id)
	}
	img, err := imagesapi.NewImagesClient(conn).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("containerd: image %q of container %s/%s: %w", name, ns, id, err)
	}
	d := img.GetImage().GetTarget().GetDigest()
	if _, err := digest.Parse(d); err != nil {
		return nil, fmt.Errorf("containerd: image %q has no valid digest (%q): %v", name, d, err)
	}
	return &manifest.Image{Reference: name, Digest: d}, nil
}
