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
	"github.com/distribution/reference"
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

// AnnotationCRIImageName is where containerd's CRI plugin names a container's image in its OCI
// spec. CRI does not record the image in the container itself, so it is the fallback.
const AnnotationCRIImageName = "io.kubernetes.cri.image-name"

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
	names := []string{c.GetContainer().GetImage()}
	if names[0] == "" {
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
		return &manifest.Image{Reference: name, Digest: d}, nil
	}
	return nil, fmt.Errorf("containerd: container %s/%s: %w", ns, id, errors.Join(errs...))
}
