package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// The node operator's forgery of Intel hardware evidence (hole 1 of the trust-holes issue).
//
// Party: the node operator, who holds the sim platform key (rune creates it on the node) and
// controls everything the node sends: evidence, RA-TLS endorsements, collateral it hands out.
// Attack: with the sim key (or any self-made CA) as root, sign a PCK Platform CA, a PCK
// certificate carrying a real platform's SGX extensions, a TCB Signing certificate, and with
// them a re-signed real quote plus a TCB info and QE identity that say UpToDate. Before the fix,
// every --roots certificate (the sim platform certificate a sim user passes) anchored DCAP chains
// too, and the sim platform certificate was a CA, so shelter reported intelSgx, verified,
// UpToDate. Now DCAP chains end only at Intel's pinned root or an explicit --intel-root, so the
// forged PCK chain fails with "certificate signed by unknown authority".

// forgery is one attacker PKI over one real sample.
type forgery struct {
	name       string
	quote      []byte   // forged quote
	collateral [][]byte // forged TCB info, QE identity, issuer chain
	now        time.Time
	pki        *dcaptest.PKI
	sample     string // the real quote it imitates
	tcb, qe    []byte // the real collateral it imitates
}

type dcapSample struct {
	tee            attestation.TEE
	quote, tcb, qe string
	at             time.Time
}

var dcapSamples = []dcapSample{
	{attestation.SGX, "sgx/oasis_quote_v3_pck_chain.bin", "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", "sgx/oasis_qeidentity_qe_v2.json",
		time.Date(2022, 12, 20, 0, 50, 4, 0, time.UTC)},
	{attestation.TDX, "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin", "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json", "tdx/oasis_qeidentity_td_qe_2024-09.json",
		time.Date(2024, 9, 2, 7, 43, 52, 0, time.UTC)},
}

var (
	tcbStatus  = regexp.MustCompile(`"tcbStatus":"[A-Za-z]+"`)
	issueDate  = regexp.MustCompile(`"issueDate":"[^"]+"`)
	nextUpdate = regexp.MustCompile(`"nextUpdate":"[^"]+"`)
)

// upToDateAt rewrites every TCB status of a TCB info or QE identity to UpToDate (the most
// favourable verdict, which is what the attacker wants the tenant to read) and dates it as current
// at at.
func upToDateAt(at time.Time) func([]byte) []byte {
	return func(body []byte) []byte {
		body = tcbStatus.ReplaceAll(body, []byte(`"tcbStatus":"UpToDate"`))
		body = issueDate.ReplaceAll(body, []byte(`"issueDate":"`+at.Add(-time.Hour).UTC().Format(time.RFC3339)+`"`))
		return nextUpdate.ReplaceAll(body, []byte(`"nextUpdate":"`+at.Add(30*24*time.Hour).UTC().Format(time.RFC3339)+`"`))
	}
}

// simOperator is the node operator's sim platform: the key file rune keeps on the node (which the
// operator can read) and the certificate a sim user gives its verifiers.
func simOperator(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate, string) {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "platform-key.pem")
	p, err := sim.LoadOrCreatePlatform(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemKey)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "sim-platform.pem")
	if err := os.WriteFile(certPath, p.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey), p.Certificate(), certPath
}

// forge imitates sample s under rootKey (with root as its certificate, or a self-made one),
// current at time at.
func forge(t *testing.T, s dcapSample, name string, rootKey *ecdsa.PrivateKey, root *x509.Certificate, reportData *[64]byte, at time.Time) *forgery {
	t.Helper()
	pki, err := dcaptest.NewPKI(rootKey, root, at.Add(-24*time.Hour), at.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	real := readSample(t, s.quote)
	q, err := pki.Reforge(real, dcaptest.Options{ReportData: reportData})
	if err != nil {
		t.Fatal(err)
	}
	realTCB, realQE := readSample(t, s.tcb), readSample(t, s.qe)
	tcb, err := pki.Resign(realTCB, upToDateAt(at))
	if err != nil {
		t.Fatal(err)
	}
	qe, err := pki.Resign(realQE, upToDateAt(at))
	if err != nil {
		t.Fatal(err)
	}
	return &forgery{name: string(s.tee) + " signed with " + name, quote: q, collateral: [][]byte{tcb, qe, pki.IssuerChainPEM()},
		now: at, pki: pki, sample: s.quote, tcb: realTCB, qe: realQE}
}

func readSample(t *testing.T, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

// TestForgedDCAPEvidenceRejected plays the forgery through the library, as --collateral and as
// RA-TLS endorsements, for SGX and TDX, with the sim key and with a self-made CA as root.
func TestForgedDCAPEvidenceRejected(t *testing.T) {
	simKey, simCert, _ := simOperator(t)
	oldSimCert := oldStyleSimCertificate(t, simKey, simCert)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range dcapSamples {
		for _, root := range []struct {
			name string
			key  *ecdsa.PrivateKey
			cert *x509.Certificate
		}{
			{"the sim platform key", simKey, simCert},
			// Older rune exported the platform certificate as a CA: the chain ends at that very
			// certificate, which tenants of older releases hold as their sim anchor.
			{"the sim platform key, as older rune exported it", simKey, oldSimCert},
			{"a self-made CA", caKey, nil},
		} {
			f := forge(t, s, root.name, root.key, root.cert, nil, s.at)
			// The tenant trusts the operator's sim platform for sim evidence, as every sim user does
			// (both forms of its certificate: the sim verifier refuses the CA form on its own).
			tenant := attestation.Options{Now: f.now, SimRoots: []*x509.Certificate{simCert, oldSimCert}}

			t.Run(f.name+", via collateral", func(t *testing.T) {
				opts := tenant
				opts.Collateral = f.collateral
				res, err := attestation.Verify(context.Background(), f.quote, opts)
				if err == nil {
					t.Fatalf("forged %s evidence verified: %+v", s.tee, res)
				}
				if !strings.Contains(err.Error(), "PCK chain") || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
					t.Fatalf("rejected for another reason than the untrusted chain: %v", err)
				}
			})

			t.Run(f.name+", via RA-TLS endorsements", func(t *testing.T) {
				cert, _ := forgedRATLSCertificate(t, s, root.key, root.cert)
				// An RA-TLS certificate is made and checked now; the tenant's anchors are the same.
				now := tenant
				now.Now = time.Time{}
				p, err := enclavetls.VerifyCertificate(context.Background(), cert, now, nil)
				if err == nil {
					t.Fatalf("forged %s RA-TLS certificate verified: %+v", s.tee, p.Result)
				}
				if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
					t.Fatalf("rejected for another reason than the untrusted chain: %v", err)
				}
			})
		}

		// Controls: the forgeries are well formed, so the rejections above are the anchors' doing.
		t.Run(string(s.tee)+" control: a self-made CA passed explicitly as an Intel root", func(t *testing.T) {
			f := forge(t, s, "a self-made CA", caKey, nil, nil, s.at)
			res, err := attestation.Verify(context.Background(), f.quote, attestation.Options{
				Now: f.now, IntelRoots: []*x509.Certificate{f.pki.Root}, Collateral: f.collateral})
			if err != nil {
				t.Fatalf("the forgery is malformed, so the test proves nothing: %v", err)
			}
			if res.TEE != s.tee || !res.Verified || res.TCBStatus != "UpToDate" {
				t.Fatalf("forgery under an explicit Intel root: %+v", res)
			}
		})
		t.Run(string(s.tee)+" control: the RA-TLS forgery under a self-made CA passed as an Intel root", func(t *testing.T) {
			cert, root := forgedRATLSCertificate(t, s, caKey, nil)
			p, err := enclavetls.VerifyCertificate(context.Background(), cert, attestation.Options{IntelRoots: []*x509.Certificate{root}}, nil)
			if err != nil {
				t.Fatalf("the RA-TLS forgery is malformed, so the test proves nothing: %v", err)
			}
			if p.Result.TEE != s.tee || p.Result.TCBStatus != "UpToDate" || p.Result.Collateral.Source != attestation.SourcePeer {
				t.Fatalf("RA-TLS forgery under an explicit Intel root: %+v %+v", p.Result, p.Result.Collateral)
			}
		})
		t.Run(string(s.tee)+" control: the sim platform certificate passed as an Intel root", func(t *testing.T) {
			f := forge(t, s, "the sim platform key", simKey, simCert, nil, s.at)
			_, err := attestation.Verify(context.Background(), f.quote, attestation.Options{
				Now: f.now, IntelRoots: []*x509.Certificate{simCert}, Collateral: f.collateral})
			if err == nil || !strings.Contains(err.Error(), "is not a CA certificate") {
				t.Fatalf("the sim platform certificate anchored a DCAP chain: %v", err)
			}
		})
	}
}

// forgedRATLSCertificate is an Enclave-TLS certificate whose evidence is a forged quote binding
// the certificate's key, with the forged collateral (current now) as endorsements: what a node
// operator's impostor service would present. It returns the certificate and the forgery's root.
func forgedRATLSCertificate(t *testing.T, s dcapSample, rootKey *ecdsa.PrivateKey, root *x509.Certificate) (*x509.Certificate, *x509.Certificate) {
	t.Helper()
	// One PKI for the endorsements and the quote, as a real platform has one chain.
	f := forge(t, s, "", rootKey, root, nil, time.Now())
	return ratlsCertificate(t, f, &enclavetls.IntelEndorsements{
		Version: 1, TCBInfo: f.collateral[0], QEIdentity: f.collateral[1],
		TCBInfoIssuerChain: f.collateral[2], QEIdentityIssuerChain: f.collateral[2],
	}), f.pki.Root
}

// ratlsCertificate is an Enclave-TLS certificate whose evidence is f's sample re-signed under f's
// PKI, binding the certificate's key, with endorsements as the peer chooses them.
func ratlsCertificate(t *testing.T, f *forgery, endorsements *enclavetls.IntelEndorsements) *x509.Certificate {
	t.Helper()
	real := readSample(t, f.sample)
	evidence := func(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
		return f.pki.Reforge(real, dcaptest.Options{ReportData: &rd})
	}
	id, err := enclavetls.NewIdentity(evidence, enclavetls.IdentityOptions{Endorsements: endorsements})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := id.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// oldStyleSimCertificate is the sim platform certificate as rune exported it before the fix: the
// same key and name, but a CA allowed to sign certificates.
func oldStyleSimCertificate(t *testing.T, key *ecdsa.PrivateKey, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: c.SerialNumber, Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	old, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return old
}

// TestShelterRejectsForgedDCAP runs the forgery through the shelter binary as a tenant would:
// with the sim platform certificate given the new way (--sim-root) and the old way (--roots),
// and the forged collateral as --collateral.
func TestShelterRejectsForgedDCAP(t *testing.T) {
	shelter := os.Getenv("SHELTER_BINARY") // another build, e.g. the one before the fix
	if shelter == "" {
		shelter = filepath.Join(harness.RepoRoot(t), "bin", "shelter")
	}
	if _, err := os.Stat(shelter); err != nil {
		t.Fatalf("shelter binary: %v (run make build)", err)
	}
	simKey, simCert, simPath := simOperator(t)
	dir := t.TempDir()
	oldSimCert := oldStyleSimCertificate(t, simKey, simCert)
	oldSimPath := filepath.Join(dir, "old-sim-platform.pem")
	if err := os.WriteFile(oldSimPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: oldSimCert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range dcapSamples {
		for _, tc := range []struct {
			name   string
			root   *x509.Certificate
			anchor []string
			code   int
			want   []string
		}{
			{"--sim-root", simCert, []string{"--sim-root", simPath}, 1,
				[]string{`"verified": false`, `"ok": false`, "certificate signed by unknown authority"}},
			{"--roots", simCert, []string{"--roots", simPath}, 1,
				[]string{`"verified": false`, `"ok": false`, "certificate signed by unknown authority"}},
			// What a tenant of an older release holds and passes: refused as an anchor outright.
			// (The shelter before the fix printed intelSgx/tdx, verified, UpToDate and exit 0.)
			{"--roots with the CA-form sim certificate", oldSimCert, []string{"--roots", oldSimPath}, 2, nil},
			{"--sim-root with the CA-form sim certificate", oldSimCert, []string{"--sim-root", oldSimPath}, 2, nil},
		} {
			t.Run(string(s.tee)+" "+tc.name, func(t *testing.T) {
				f := forge(t, s, "the sim platform key", simKey, tc.root, nil, s.at)
				sub := t.TempDir()
				quote := filepath.Join(sub, "forged.dat")
				if err := os.WriteFile(quote, f.quote, 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{"verify", "--at", f.now.Format(time.RFC3339), "--output", "json"}
				for i, c := range f.collateral {
					p := filepath.Join(sub, "collateral-"+string(rune('a'+i)))
					if err := os.WriteFile(p, c, 0o644); err != nil {
						t.Fatal(err)
					}
					args = append(args, "--collateral", p)
				}
				policy := filepath.Join(sub, "policy.json")
				if err := os.WriteFile(policy, []byte(`{"tees":{"`+string(s.tee)+`":{"allow_any_measurement":true},"sim":{"allow_any_measurement":true,"allow_unknown_tcb":true}}}`), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(append(args, tc.anchor...), "--policy", policy, quote)
				var stderr strings.Builder
				cmd := exec.Command(shelter, args...)
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() != tc.code {
					t.Fatalf("shelter on forged %s evidence: %v, want exit %d\n%s\n%s", s.tee, err, tc.code, out, stderr.String())
				}
				for _, want := range tc.want {
					if !strings.Contains(string(out), want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
				if tc.code == 2 && !strings.Contains(stderr.String(), "CA certificate") && !strings.Contains(stderr.String(), "not a sim platform certificate") {
					t.Errorf("the CA-form certificate was refused for another reason: %s", stderr.String())
				}
			})
		}
	}
}
