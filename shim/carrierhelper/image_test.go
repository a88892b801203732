package carrierhelper

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
)

const fakeDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

// fakeContainerd serves containerd's containers and images Get calls with grpc-go, the server
// library containerd itself uses; the records are the test's. tests/shim asks a real
// containerd.
type fakeContainerd struct {
	containersapi.UnimplementedContainersServer
}

func namespaceOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(namespaceHeader); len(v) == 1 {
		return v[0]
	}
	return ""
}

func (fakeContainerd) Get(ctx context.Context, r *containersapi.GetContainerRequest) (*containersapi.GetContainerResponse, error) {
	if namespaceOf(ctx) != "ns" {
		return nil, status.Errorf(codes.FailedPrecondition, "namespace %q: not found", namespaceOf(ctx))
	}
	spec, _ := anypb.New(&types.Descriptor{MediaType: "filler, as a real record carries its spec"})
	switch r.ID {
	case "ctr":
		return &containersapi.GetContainerResponse{Container: &containersapi.Container{ID: "ctr", Image: "docker.io/library/app:1", Spec: spec, Labels: map[string]string{"a": "b"}}}, nil
	case "cri":
		return &containersapi.GetContainerResponse{Container: &containersapi.Container{ID: "cri", Spec: spec}}, nil
	case "bad-image":
		return &containersapi.GetContainerResponse{Container: &containersapi.Container{ID: "bad-image", Image: "docker.io/library/bad:1"}}, nil
	}
	return nil, status.Errorf(codes.NotFound, "container %q in namespace %q: not found", r.ID, "ns")
}

type fakeImages struct {
	imagesapi.UnimplementedImagesServer
}

func (fakeImages) Get(ctx context.Context, r *imagesapi.GetImageRequest) (*imagesapi.GetImageResponse, error) {
	switch r.Name {
	case "docker.io/library/app:1":
		return &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: r.Name, Target: &types.Descriptor{MediaType: "application/vnd.oci.image.index.v1+json", Digest: fakeDigest, Size: 100}}}, nil
	case "docker.io/library/bad:1":
		return &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: r.Name, Target: &types.Descriptor{Digest: "md5:nope"}}}, nil
	}
	return nil, status.Errorf(codes.NotFound, "image %q: not found", r.Name)
}

func TestLookupImage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	containersapi.RegisterContainersServer(srv, fakeContainerd{})
	imagesapi.RegisterImagesServer(srv, fakeImages{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	want := &enclavemanifest.Image{Reference: "docker.io/library/app:1", Digest: fakeDigest}
	tests := []struct {
		name, ns, id, cri string
		want              *enclavemanifest.Image
		wantErr           string
	}{
		{name: "the container's image (ctr)", ns: "ns", id: "ctr", want: want},
		{name: "the container's image wins over the annotation", ns: "ns", id: "ctr", cri: "other:2", want: want},
		{name: "CRI annotation, as stored", ns: "ns", id: "cri", cri: "docker.io/library/app:1", want: want},
		{name: "CRI annotation, short name", ns: "ns", id: "cri", cri: "app:1", want: want},
		{name: "CRI container without annotation", ns: "ns", id: "cri", wantErr: "records no image, and its spec has no io.kubernetes.cri.image-name annotation"},
		{name: "CRI image unknown", ns: "ns", id: "cri", cri: "nope", wantErr: `image "docker.io/library/nope:latest": rpc error: code = NotFound desc = image "docker.io/library/nope:latest": not found`},
		{name: "no such container", ns: "ns", id: "gone", wantErr: `container ns/gone: rpc error: code = NotFound desc = container "gone" in namespace "ns": not found`},
		{name: "another namespace", ns: "other", id: "ctr", wantErr: "code = FailedPrecondition"},
		{name: "invalid digest", ns: "ns", id: "bad-image", wantErr: `has no valid digest ("md5:nope")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// containerd hands shims a bare path; the unix:// form is accepted too.
			addr := sock
			if tc.id == "ctr" {
				addr = "unix://" + sock
			}
			got, err := LookupImage(context.Background(), addr, tc.ns, tc.id, tc.cri)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LookupImage = %+v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || *got != *tc.want {
				t.Fatalf("LookupImage = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestLookupImageErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := LookupImage(ctx, "", "ns", "id", ""); err == nil {
		t.Error("LookupImage without an address succeeded")
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	if _, err := LookupImage(ctx, sock, "ns", "id", ""); err == nil || !strings.Contains(err.Error(), "container ns/id") {
		t.Errorf("LookupImage on a socket nobody serves: %v", err)
	}
}
