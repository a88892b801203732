package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/inclavare-containers/inclavare-go/deviceplugin"
)

// The test binary runs as the command when this variable is set, so that the tests drive the
// real main: flags, signals, exit codes.
const runMainEnv = "RUNE_DEVICE_PLUGIN_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type kubelet struct {
	pb.UnimplementedRegistrationServer
	requests chan *pb.RegisterRequest
}

func (k *kubelet) Register(_ context.Context, r *pb.RegisterRequest) (*pb.Empty, error) {
	k.requests <- r
	return &pb.Empty{}, nil
}

func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	return cmd
}

func TestSIGTERM(t *testing.T) {
	dir, err := os.MkdirTemp("", "dpcmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	host := t.TempDir()
	k := &kubelet{requests: make(chan *pb.RegisterRequest, 8)}
	l, err := net.Listen("unix", filepath.Join(dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterRegistrationServer(srv, k)
	go srv.Serve(l)
	defer srv.Stop()

	cmd := command("-plugin-dir", dir, "-host-root", host, "-sim-slots", "7", "-poll-interval", "10ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	var r *pb.RegisterRequest
	select {
	case r = <-k.requests:
	case err := <-exited:
		t.Fatalf("exited before registering: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no registration\n%s", stderr.String())
	}
	if r.ResourceName != deviceplugin.ResourceSim || r.Version != pb.Version {
		t.Errorf("registered %v", r)
	}
	socket := filepath.Join(dir, r.Endpoint)
	if _, err := os.Stat(socket); err != nil {
		t.Fatalf("endpoint: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running after SIGTERM\n%s", stderr.String())
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-sim-slots", "-1"},
		{"-plugin-dir", "relative/dir"},
		{"-log-level", "loud"},
		{"extra-argument"},
		{"-no-such-flag"},
	} {
		out, err := command(args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2\n%s", args, err, out)
		}
	}
}
