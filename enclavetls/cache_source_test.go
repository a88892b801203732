package enclavetls

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
)

// TestVerdictCacheSourceRenewedCollateral: a remembered verdict never refuses what a
// verification at that time would accept. With a collateral source (Intel PCS or a PCCS fetched
// without a disk cache), the collateral a verdict rests on can grow too old for the policy's
// max_collateral_age while the source already serves a younger TCB info and QE identity. The
// reused verdict is refused by the policy; the certificate must then be verified again with what
// the source now returns, and accepted, as a verifier without a cache accepts it. Before the
// fix the remembered verdict's refusal was final: a genuine peer was locked out (for up to
// MaxVerdictAge) whenever its verdict's collateral crossed the age limit.
func TestVerdictCacheSourceRenewedCollateral(t *testing.T) {
	at := sgxAt
	pki, err := dcaptest.NewPKI(newKey(t), nil, at.Add(-24*time.Hour), at.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Intel's documents re-signed under pki, as issued (oldest: the QE identity of 2022-12-16),
	// and the same documents re-issued an hour before at.
	reissued := at.Add(-time.Hour).UTC().Format(time.RFC3339)
	resign := func(file, issued string) []byte {
		doc, err := pki.Resign(readSample(t, file), func(body []byte) []byte {
			if issued == "" {
				return body
			}
			i := bytes.Index(body, []byte(`"issueDate":"`))
			if i < 0 {
				t.Fatalf("%s: no issueDate", file)
			}
			i += len(`"issueDate":"`)
			return slices.Concat(body[:i], []byte(issued), body[i+len(issued):])
		})
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	old := [][]byte{resign("sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", ""), resign("sgx/oasis_qeidentity_qe_v2.json", ""), pki.IssuerChainPEM()}
	young := [][]byte{resign("sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", reissued), resign("sgx/oasis_qeidentity_qe_v2.json", reissued), pki.IssuerChainPEM()}

	cert := dcapCert(t, pki, newKey(t), "sgx/oasis_quote_v3_pck_chain.bin", at, nil, nil)
	roots := []*x509.Certificate{pki.Root}
	first, err := VerifyCertificate(context.Background(), cert, attestation.Options{Now: at, IntelRoots: roots, Collateral: old}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Result.Collateral.Oldest.Equal(sgxOldest) {
		t.Fatalf("oldest collateral %s, want %s", first.Result.Collateral.Oldest, sgxOldest)
	}
	// Young enough for five more minutes after at.
	pol := teePolicy(t, attestation.SGX, "mrenclave", []string{first.Result.Measurements["mrenclave"]}, `"UpToDate","SWHardeningNeeded","OutOfDate"`,
		fmt.Sprintf(`,"max_collateral_age":%q`, (at.Sub(sgxOldest)+5*time.Minute).String()))

	src := &countingSource{files: old}
	v := &Verifier{Options: attestation.Options{IntelRoots: roots, Source: src}, Policy: pol}
	if _, err := verifyAt(v, at, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, at.Add(4*time.Minute), cert, at)
	// The source now serves the re-issued documents.
	src.files = young
	late := at.Add(6 * time.Minute) // inside MaxVerdictAge and the verdict's ValidUntil
	fresh := &Verifier{Options: attestation.Options{IntelRoots: roots, Source: &countingSource{files: young}}, Policy: pol, CacheSize: -1}
	if _, err := verifyAt(fresh, late, cert, nil); err != nil {
		t.Fatalf("a verifier without a cache at %s: %v", late, err)
	}
	p, err := verifyAt(v, late, cert, nil)
	if err != nil {
		t.Fatalf("with a remembered verdict at %s: %v (a fresh verification accepts)", late, err)
	}
	if !p.VerifiedAt.Equal(late) || !p.Result.Collateral.Oldest.Equal(at.Add(-time.Hour)) || src.calls.Load() != 2 {
		t.Fatalf("verified at %s with collateral of %s after %d fetches: want a new verification at %s with the re-issued collateral",
			p.VerifiedAt, p.Result.Collateral.Oldest, src.calls.Load(), late)
	}
	// The new verdict is the one remembered.
	mustReuse(t, v, late.Add(time.Minute), cert, late)
}

// TestVerdictKeyCoversOptions: every field of attestation.Options is either in the verdict key
// or handled beside it (the time; the collateral source, compared by identity). A field added to
// Options later must be considered here, or a verdict reached with one value would be served to
// a verification with another.
func TestVerdictKeyCoversOptions(t *testing.T) {
	handled := []string{"Now", "SimRoots", "IntelRoots", "AMDRoots", "Collateral", "PeerCollateral", "AllowTrailingData", "Source"}
	var fields []string
	for f := range reflect.TypeFor[attestation.Options]().Fields() {
		fields = append(fields, f.Name)
	}
	if !slices.Equal(fields, handled) {
		t.Fatalf("attestation.Options has fields %v; the verdict cache handles %v: put the new ones in verdictKey (or say why not) and here", fields, handled)
	}
}

// TestVerdictCacheWallClock: a verdict is reused only while the verification time lies in
// [verifiedAt, until), on the wall clock that every validity check of a fresh verification reads.
// Attack (whoever sets the verifier's system clock back or forward, the node operator where the
// verifier runs on the node): with Options.Now unset, time.Now() carries a monotonic reading and
// Go compares two such times by it, so a verdict reached at 12:00 was still served after the
// clock was set back to 11:00 (or forward past a ValidUntil more than MaxVerdictAge away), where
// a fresh verification judges certificates and collateral at the changed time. The test cannot
// set this machine's clock; it checks that the times the cache stores and compares carry no
// monotonic reading (Time.String shows one as "m=").
func TestVerdictCacheWallClock(t *testing.T) {
	srv := newSimTEE(t, "server")
	v := verifierFor(t, false, srv)
	v.Options.Now = time.Time{}
	cert := leafOf(t, srv.identity(t))
	p, err := v.VerifyCertificate(context.Background(), cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := verdictKey(&v.Options, cert.Raw, nil)
	e, ok := v.verdicts().entries[k]
	if !ok {
		t.Fatal("verdict not remembered")
	}
	d := e.Value.(*verdict)
	for name, tm := range map[string]time.Time{"VerifiedAt": p.VerifiedAt, "from": d.from, "until": d.until} {
		if strings.Contains(tm.String(), " m=") {
			t.Errorf("%s %s carries a monotonic reading: a clock set back or forward is not seen", name, tm)
		}
	}
}
