package shelter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
)

// RemoteInput is a remote attestation job: inclavared at Network/Address, and the policies its own
// evidence and the confidential container's must satisfy.
type RemoteInput struct {
	Network, Address string
	Options          attestation.Options
	InclavaredPolicy *policy.Policy
	ContainerPolicy  *policy.Policy
}

// RemoteReport is the verdict on inclavared and the container behind it.
type RemoteReport struct {
	Address    string  `json:"address"`
	Inclavared *Report `json:"inclavared"`
	Container  *Report `json:"container"`
	// OK is true only when both verified fresh and both policies hold.
	OK bool `json:"ok"`
}

// RemoteAttestation connects to inclavared over Enclave-TLS, requiring fresh evidence that
// satisfies InclavaredPolicy (a failure ends the handshake), then asks it for the container's
// evidence bound to a nonce of shelter's own, and verifies that certificate itself: evidence, key
// binding, nonce and ContainerPolicy. It never fails: problems are in the reports.
func RemoteAttestation(ctx context.Context, in RemoteInput) *RemoteReport {
	rr := &RemoteReport{Address: in.Network + "://" + in.Address}
	notReached := func(why string) *Report {
		r := &Report{Subject: "container", Kind: KindCertificate, Measurements: map[string]string{}, Errors: []string{why}}
		r.Policy.Violations = []Violation{}
		return r
	}
	if in.InclavaredPolicy == nil || in.ContainerPolicy == nil {
		err := errors.New("a policy is required for inclavared and for the container")
		rr.Inclavared, rr.Container = Failed("inclavared", err), notReached(err.Error())
		return rr
	}
	client, err := enclavetls.NewClient(enclavetls.Config{Verifier: &enclavetls.Verifier{
		Options: in.Options, Policy: in.InclavaredPolicy, RequireFresh: true}})
	if err != nil {
		rr.Inclavared, rr.Container = Failed("inclavared", err), notReached("not asked: "+err.Error())
		return rr
	}
	conn, err := client.DialContext(ctx, in.Network, in.Address)
	if err != nil {
		rr.Inclavared = Failed("inclavared", err)
		rr.Container = notReached("not asked: inclavared did not pass attestation")
		return rr
	}
	defer conn.Close()
	rr.Inclavared = FromPeer("inclavared", conn.Peer(), in.InclavaredPolicy)

	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		rr.Container = notReached(fmt.Sprintf("nonce: %v", err))
		return rr
	}
	var resp wire.Response
	if err := wire.Call(ctx, conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeAttest, Nonce: hex.EncodeToString(nonce)}, &resp); err != nil {
		rr.Container = notReached(fmt.Sprintf("attest request: %v", err))
		return rr
	}
	if resp.Error != "" || len(resp.UpstreamCertificate) == 0 {
		rr.Container = notReached("inclavared: " + orDefault(resp.Error, "no container certificate in the answer"))
		return rr
	}
	rr.Container = Verify(ctx, VerifyInput{Subject: "container", Data: resp.UpstreamCertificate,
		Options: in.Options, Policy: in.ContainerPolicy, Nonce: nonce})
	rr.OK = rr.Inclavared.OK && rr.Inclavared.Fresh && rr.Container.OK && rr.Container.Fresh
	return rr
}

// WriteText prints rr for a human.
func (rr *RemoteReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "remote attestation of %s\n\n", rr.Address)
	for _, r := range []*Report{rr.Inclavared, rr.Container} {
		if err := r.WriteText(&b); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	if rr.OK {
		b.WriteString("remote attestation: PASS (inclavared and the container verified, fresh, policies hold)\n")
	} else {
		b.WriteString("remote attestation: FAIL\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
