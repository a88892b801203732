package shelter

import (
	"context"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
)

// serveUpstream is a minimal confidential service (GETENCLAVEINFO) that accepts clients from
// clientTEE.
func serveUpstream(t *testing.T, tee, clientTEE *simSetup) string {
	t.Helper()
	srv, err := enclavetls.NewServer(enclavetls.Config{Identity: tee.identity(t), Verifier: &enclavetls.Verifier{
		Options: attestation.Options{SimRoots: []*x509.Certificate{clientTEE.platform.Certificate()}},
		Policy:  clientTEE.policy(t), RequireFresh: true}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				conn := srv.Server(c)
				codec := wire.NewCodec(conn)
				for {
					var req wire.Request
					if codec.Read(&req) != nil {
						return
					}
					codec.Write(&wire.Response{MsgType: wire.MsgTypeEnclaveInfo, Version: 1, Message: "svc"})
				}
			}()
		}
	}()
	return l.Addr().String()
}

// remoteSetup runs inclavared (sim) in front of a service (sim, another platform).
type remoteSetup struct {
	daemon, service *simSetup
	addr            string
	opts            attestation.Options
}

func startRemote(t *testing.T) *remoteSetup {
	t.Helper()
	s := &remoteSetup{daemon: newSim(t, "inclavared"), service: newSim(t, "container")}
	s.opts = attestation.Options{SimRoots: []*x509.Certificate{s.daemon.platform.Certificate(), s.service.platform.Certificate()}}
	upAddr := serveUpstream(t, s.service, s.daemon)
	d, err := inclavared.New(inclavared.Config{
		Identity:         s.daemon.identity(t),
		UpstreamNetwork:  "tcp",
		UpstreamAddress:  upAddr,
		UpstreamVerifier: &enclavetls.Verifier{Options: s.opts, Policy: s.service.policy(t), RequireFresh: true},
		// shelter presents no evidence of its own
		AllowUnattestedClients: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestRemoteAttestation(t *testing.T) {
	s := startRemote(t)
	both := parsePolicy(t, `{"tees":{"sim":{"measurements":{"measurement":["`+s.daemon.measurement+`","`+s.service.measurement+`"]},"allow_unknown_tcb":true}}}`)
	stranger := newSim(t, "stranger")
	for _, tc := range []struct {
		name                  string
		opts                  attestation.Options
		daemonPol, containPol *policy.Policy
		ok                    bool
		daemonOK, containerOK bool
		daemonErr, contErr    string
		daemonViolation       string
		containerViolation    string
	}{
		{name: "both verify", opts: s.opts, daemonPol: both, containPol: both, ok: true, daemonOK: true, containerOK: true},
		{name: "separate policies", opts: s.opts, daemonPol: s.daemon.policy(t), containPol: s.service.policy(t), ok: true, daemonOK: true, containerOK: true},
		{name: "inclavared violates its policy", opts: s.opts, daemonPol: stranger.policy(t), containPol: both,
			daemonErr: "policy", daemonViolation: "measurements.measurement", contErr: "not asked"},
		{name: "container violates its policy", opts: s.opts, daemonPol: both, containPol: stranger.policy(t),
			daemonOK: true, containerViolation: "measurements.measurement"},
		{name: "inclavared's platform not trusted", opts: attestation.Options{SimRoots: []*x509.Certificate{s.service.platform.Certificate()}},
			daemonPol: both, containPol: both, daemonErr: "not among", contErr: "not asked"},
		{name: "container's platform not trusted", opts: attestation.Options{SimRoots: []*x509.Certificate{s.daemon.platform.Certificate()}},
			daemonPol: both, containPol: both, daemonOK: true, contErr: "not among"},
		{name: "no policy", opts: s.opts, daemonPol: both, contErr: "policy is required", daemonErr: "policy is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
			defer cancel()
			rr := RemoteAttestation(ctx, RemoteInput{Network: "tcp", Address: s.addr, Options: tc.opts,
				InclavaredPolicy: tc.daemonPol, ContainerPolicy: tc.containPol})
			if rr.OK != tc.ok || rr.Inclavared.OK != tc.daemonOK || rr.Container.OK != tc.containerOK {
				t.Fatalf("ok=%v inclavared=%+v container=%+v", rr.OK, rr.Inclavared, rr.Container)
			}
			check := func(who string, r *Report, errWant, violation string) {
				if errWant != "" && (len(r.Errors) == 0 || !strings.Contains(r.Errors[0], errWant)) {
					t.Errorf("%s errors %q, want %q", who, r.Errors, errWant)
				}
				if violation != "" && (len(r.Policy.Violations) == 0 || r.Policy.Violations[0].Rule != violation) {
					t.Errorf("%s violations %+v, want %s", who, r.Policy.Violations, violation)
				}
			}
			check("inclavared", rr.Inclavared, tc.daemonErr, tc.daemonViolation)
			check("container", rr.Container, tc.contErr, tc.containerViolation)
			if tc.ok {
				if !rr.Inclavared.Fresh || !rr.Container.Fresh || rr.Container.Measurements["measurement"] != s.service.measurement ||
					rr.Inclavared.Measurements["measurement"] != s.daemon.measurement {
					t.Fatalf("reports %+v %+v", rr.Inclavared, rr.Container)
				}
				var b strings.Builder
				rr.WriteText(&b)
				if !strings.Contains(b.String(), "remote attestation: PASS") {
					t.Errorf("text:\n%s", b.String())
				}
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		rr := RemoteAttestation(context.Background(), RemoteInput{Network: "unix", Address: "/nonexistent/inclavared.sock",
			Options: s.opts, InclavaredPolicy: both, ContainerPolicy: both})
		if rr.OK || len(rr.Inclavared.Errors) == 0 {
			t.Fatalf("%+v", rr.Inclavared)
		}
	})
}
