package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/collateral/pcstest"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// bins holds the binaries built once for all tests; shelter is built with CGO_ENABLED=0, as it
// must build.
var bins struct {
	dir, shelter, inclavared, service string
	err                               error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shelter-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.shelter = filepath.Join(dir, "shelter")
	bins.inclavared = filepath.Join(dir, "inclavared")
	bins.service = filepath.Join(dir, "confidential-service")
	for out, pkg := range map[string]string{
		bins.shelter:    ".",
		bins.inclavared: "../inclavared",
		bins.service:    "../../examples/confidential-service",
	} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("CGO_ENABLED=0 go build %s: %v\n%s", pkg, err, b)
			break
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needBins(t *testing.T) {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// TestBuildsWithoutCgo: the CGO_ENABLED=0 build succeeded and produced a static executable.
func TestBuildsWithoutCgo(t *testing.T) {
	needBins(t)
	f, err := elf.Open(bins.shelter)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("shelter has a program interpreter: it is dynamically linked")
		}
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard only
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return r
}

func sample(t *testing.T, rel string) string {
	return filepath.Join(testdata.Attestation(t), rel)
}

// simFiles writes a sim platform's certificate and an endorsed enclave key file, and evidence.
type simFiles struct {
	measurement, root, keyFile, evidence string
}

func newSimFiles(t *testing.T, dir, name string) *simFiles {
	t.Helper()
	p, key, m := simtest.Enclave(t, name, "builtin:native")
	s := &simFiles{measurement: m, root: filepath.Join(dir, name+"-platform.pem"),
		keyFile: filepath.Join(dir, name+"-key.pem"), evidence: filepath.Join(dir, name+"-evidence.bin")}
	kb, _ := key.MarshalBinary()
	ev, err := key.Evidence([64]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{s.root: p.CertificatePEM(), s.keyFile: kb, s.evidence: ev} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func writePolicy(t *testing.T, dir, name string, measurements ...string) string {
	t.Helper()
	b, _ := json.Marshal(measurements)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(`{"tees":{"sim":{"measurements":{"measurement":`+string(b)+`},"allow_unknown_tcb":true}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerify(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	s := newSimFiles(t, dir, "workload")
	good := writePolicy(t, dir, "good.json", s.measurement)
	bad := writePolicy(t, dir, "bad.json", strings.Repeat("0", 64))
	broken := filepath.Join(dir, "broken.json")
	sgxB64 := filepath.Join(dir, "quote.b64")
	if raw, err := os.ReadFile(sample(t, "sgx/oasis_quote_v3_pck_chain.bin")); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(sgxB64, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(broken, []byte(`{"tees":{"sim":{}}}`), 0o644)
	example := "../../attestation/policy/testdata/example.json"
	sgx := sample(t, "sgx/oasis_quote_v3_pck_chain.bin")
	sgxColl := []string{"--collateral", sample(t, "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"),
		"--collateral", sample(t, "sgx/oasis_qeidentity_qe_v2.json"), "--collateral", sample(t, "sgx/oasis_tcb_signing_chain.pem")}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings (text) or "key=value" checks on JSON
	}{
		{"SGX, collateral, example policy", append(append([]string{"verify", "--at", "2022-12-20T00:50:04Z", "--policy", example, "--output", "json"}, sgxColl...), sgx),
			0, []string{"tee=intelSgx", "verified=true", "tcb_status=SWHardeningNeeded", "ok=true"}},
		{"SGX, no collateral, example policy", []string{"verify", "--at", "2022-12-20T00:50:04Z", "--policy", example, "--output", "json", sgx},
			1, []string{"verified=true", "ok=false"}},
		// Without a policy nothing is decided: the facts are printed, the status is 3, never 0.
		{"SGX, no policy, text", []string{"verify", "--at", "2022-12-20T00:50:04Z", sgx},
			3, []string{"UNDECIDED", "nothing was decided", "68823bc62f409ee33a32ea270cfe45d4b19a6fb3c8570d7bc186cbe062398e8f"}},
		{"SGX, no policy, JSON", []string{"verify", "--at", "2022-12-20T00:50:04Z", "--output", "json", sgx},
			3, []string{"verified=true", "decided=false", "ok=false", "simulated=false"}},
		{"sim evidence, no policy", []string{"verify", "--sim-root", s.root, "--output", "json", s.evidence},
			3, []string{"tee=sim", "simulated=true", "verified=true", "decided=false", "ok=false"}},
		{"SGX quote as base64 text", []string{"verify", "--at", "2022-12-20T00:50:04Z", "--policy", example, "--output", "json", "--collateral", sample(t, "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"),
			"--collateral", sample(t, "sgx/oasis_qeidentity_qe_v2.json"), "--collateral", sample(t, "sgx/oasis_tcb_signing_chain.pem"), sgxB64},
			0, []string{"tee=intelSgx", "ok=true", `"evidence_form": "base64"`}},
		{"SGX, expired PCK", []string{"verify", "--at", "2029-12-05T11:12:02Z", sgx}, 1, []string{"verdict:      FAIL"}},
		{"TDX with zero padding", []string{"verify", "--at", "2024-09-21T12:00:00Z", "--output", "json", sample(t, "tdx/oasis_quote_v4_tdx_trailing70.bin")}, 3, []string{"verified=true"}},
		{"TDX with trailing text, strict", []string{"verify", "--at", "2023-07-01T01:00:00Z", sample(t, "tdx/gotdx_quote_v4_spr_e4_trailing39.dat")}, 1, []string{"not zero padding", "--allow-trailing-data"}},
		{"TDX with trailing text, tolerant", []string{"verify", "--allow-trailing-data", "--at", "2023-07-01T01:00:00Z", sample(t, "tdx/gotdx_quote_v4_spr_e4_trailing39.dat")}, 3, []string{"verified:     yes"}},
		{"SNP without VCEK", []string{"verify", "--at", "2022-09-24T01:00:00Z", "--output", "json", sample(t, "sev-snp/gosev_report_v2_milan.bin")},
			1, []string{"tee=snp", "verified=false"}},
		{"SNP with VCEK, debug forbidden", []string{"verify", "--at", "2022-09-24T01:00:00Z", "--collateral", sample(t, "sev-snp/gosev_vcek_milan.der"),
			"--policy", example, sample(t, "sev-snp/gosev_report_v2_milan.bin")}, 1, []string{"violation:    allow_debug"}},
		// An AMD VCEK or VLEK alone gets its chain verdict (certificate-only mode), not "not evidence".
		{"Turin VCEK alone, JSON", []string{"verify", "--at", "2026-02-06T00:00:00Z", "--output", "json", sample(t, "sev-snp/ms_vcek_turin.pem")},
			0, []string{"kind=endorsement-key-certificate", "tee=snp", "verified=true", "ok=true", `"hw_id": "59790fb1c39f35c1"`, `"product_line": "Turin"`, `"fmc_spl": "1"`}},
		{"Milan VCEK alone, text", []string{"verify", "--at", "2022-09-24T01:00:00Z", sample(t, "sev-snp/gosev_vcek_milan.der")},
			0, []string{"endorsement-key-certificate", "SEV-VCEK -> SEV-Milan -> ARK-Milan", "PASS: AMD's KDS issued this certificate"}},
		{"VLEK alone, expired", []string{"verify", "--at", "2026-02-06T00:00:00Z", sample(t, "sev-snp/coco_vlek_milan.der")},
			1, []string{"endorsement-key-certificate", "expired", "verdict:      FAIL"}},
		{"VCEK alone with a policy", []string{"verify", "--at", "2022-09-24T01:00:00Z", "--policy", example, sample(t, "sev-snp/gosev_vcek_milan.der")},
			1, []string{"is not evidence", "verdict:      FAIL"}},
		{"sim evidence, roots, policy", []string{"verify", "--sim-root", s.root, "--policy", good, s.evidence}, 0, []string{"SIMULATED", "PASS"}},
		{"sim evidence, deprecated --roots, policy", []string{"verify", "--roots", s.root, "--policy", good, s.evidence}, 0, []string{"SIMULATED", "PASS"}},
		// The sim platform certificate is no Intel root: it cannot sign certificates.
		{"sim certificate as --intel-root", []string{"verify", "--intel-root", s.root, "--policy", good, s.evidence}, 2, nil},
		{"sim evidence, wrong policy", []string{"verify", "--sim-root", s.root, "--policy", bad, "--output", "json", s.evidence}, 1, []string{"verified=true", "ok=false"}},
		{"sim evidence without roots", []string{"verify", s.evidence}, 1, []string{"no trusted sim platform"}},

		{"no file", []string{"verify"}, 2, nil},
		{"two files", []string{"verify", sgx, sgx}, 2, nil},
		{"missing file", []string{"verify", filepath.Join(dir, "none")}, 2, nil},
		{"bad --at", []string{"verify", "--at", "yesterday", sgx}, 2, nil},
		{"bad --output", []string{"verify", "--output", "yaml", sgx}, 2, nil},
		{"invalid policy", []string{"verify", "--policy", broken, sgx}, 2, nil},
		{"unknown flag", []string{"verify", "--bogus", sgx}, 2, nil},
		{"bad --roots", []string{"verify", "--roots", sgx, sgx}, 2, nil},
		// A collateral file no verifier reads is an error: the user would believe it was used.
		{"unrecognised collateral", []string{"verify", "--collateral", broken, sgx}, 2, nil},
		{"an arbitrary CA in --roots", []string{"verify", "--roots", sample(t, "roots/oasis_intel_pck_platform_ca_chain.pem"), sgx}, 2, nil},
		{"unknown command", []string{"frobnicate"}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, bins.shelter, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			var js map[string]any
			if strings.Contains(strings.Join(tc.args, " "), "--output json") {
				if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
					t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
				}
			}
			for _, want := range tc.stdout {
				if k, v, ok := strings.Cut(want, "="); ok && js != nil {
					if got := fmt.Sprint(js[k]); got != v {
						t.Errorf("%s = %s, want %s", k, got, v)
					}
				} else if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
			if tc.code == 2 && r.stderr == "" {
				t.Error("usage error without a message")
			}
		})
	}
}

// daemon is a started binary whose stderr is read until its start-up line.
type daemon struct {
	cmd *exec.Cmd
}

func startDaemon(t *testing.T, ready string, bin string, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), ready) {
			go func() {
				for sc.Scan() {
					t.Logf("%s: %s", filepath.Base(bin), sc.Text())
				}
			}()
			return &daemon{cmd: cmd}
		}
		t.Logf("%s: %s", filepath.Base(bin), sc.Text())
	}
	t.Fatalf("%s exited before %q", bin, ready)
	return nil
}

// stop sends SIGTERM and requires exit status 0.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("%s after SIGTERM: %v", d.cmd.Path, err)
	}
}

// TestRemoteAttestationEndToEnd: confidential-service (sim enclave key) ← inclavared (host-side
// sim, platform key) ← shelter remoteattestation, all real binaries on unix sockets.
func TestRemoteAttestationEndToEnd(t *testing.T) {
	needBins(t)
	dir, err := os.MkdirTemp("", "e2e") // short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	svc := newSimFiles(t, dir, "svc")
	platformKey := filepath.Join(dir, "sim", "platform-key.pem")
	daemonRoot := filepath.Join(dir, "daemon-platform.pem")
	r := runBin(t, bins.inclavared, "--print-measurement")
	daemonMeasurement := strings.TrimSpace(r.stdout)
	if r.code != 0 || len(daemonMeasurement) != 64 {
		t.Fatalf("--print-measurement: %+v", r)
	}
	upPolicy := writePolicy(t, dir, "upstream.json", svc.measurement)
	both := writePolicy(t, dir, "both.json", svc.measurement, daemonMeasurement)
	onlyDaemon := writePolicy(t, dir, "daemon.json", daemonMeasurement)
	onlySvc := writePolicy(t, dir, "svc.json", svc.measurement)
	svcSock, daemonSock := filepath.Join(dir, "svc.sock"), filepath.Join(dir, "inclavared.sock")

	service := startDaemon(t, "serving on", bins.service, "--listen", "unix://"+svcSock, "--evidence", "sim-key-file", "--sim-key", svc.keyFile)
	inclavared := startDaemon(t, "listening on", bins.inclavared, "--listen", "unix://"+daemonSock, "--upstream", "unix://"+svcSock,
		"--upstream-policy", upPolicy, "--sim-root", svc.root, "--attester", "sim", "--sim-platform-key", platformKey) // evidence only
	cert, err := sim.LoadPlatformCertificate(platformKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(daemonRoot, pemCert(cert.Raw), 0o644); err != nil {
		t.Fatal(err)
	}

	base := []string{"remoteattestation", "--addr", "unix://" + daemonSock, "--sim-root", daemonRoot, "--sim-root", svc.root}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"both hold", []string{"--policy", both, "--output", "json"}, 0, []string{`"ok": true`, svc.measurement, daemonMeasurement}},
		{"separate policies, text", []string{"--policy", onlySvc, "--inclavared-policy", onlyDaemon}, 0, []string{"remote attestation: PASS"}},
		{"container not in policy", []string{"--policy", onlyDaemon, "--output", "json"}, 1, []string{`"ok": false`, "measurements.measurement"}},
		{"inclavared not in policy", []string{"--policy", onlySvc}, 1, []string{"remote attestation: FAIL", "not asked"}},
		{"no policy", nil, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, bins.shelter, append(base, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
	inclavared.stop(t)
	service.stop(t)
	for _, s := range []string{daemonSock, svcSock} {
		if _, err := os.Stat(s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", s, err)
		}
	}
	// inclavared gone: shelter fails cleanly.
	if r := runBin(t, bins.shelter, append(base, "--policy", both)...); r.code != 1 {
		t.Fatalf("exit %d with inclavared stopped", r.code)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestVerifyFetchesCollateral: shelter verify fetches Intel collateral from a PCCS (the stand-in
// on loopback serves recorded real collateral; see pcstest), caches it, and works offline from
// the cache; without collateral sources --offline is a usage error.
func TestVerifyFetchesCollateral(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	srv := pcstest.New(t, pcstest.Recorded(t))
	ca := filepath.Join(dir, "pccs-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	quote := sample(t, "tdx/gotdx_quote_v4_spr_e4_trailing39.dat")
	base := []string{"verify", "--at", "2023-07-01T01:00:00Z", "--allow-trailing-data", "--collateral-cache", cache, "--output", "json"}
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		want  []string
		fetch bool
	}{
		// The README's verdict for this quote with its collateral: no TCB level matches.
		{"from the PCCS", append(append([]string{}, base...), "--collateral-from", srv.URL, "--collateral-ca", ca, quote), 1, []string{"TCB level not supported"}, true},
		{"from the cache, offline", append(append([]string{}, base...), "--offline", quote), 1, []string{"TCB level not supported"}, false},
		{"PCCS certificate not trusted", append([]string{"verify", "--at", "2023-07-01T01:00:00Z", "--allow-trailing-data", "--collateral-from", srv.URL}, quote), 1,
			[]string{"certificate signed by unknown authority"}, false},
		{"plain http refused", []string{"verify", "--collateral-from", "http://127.0.0.1:1", quote}, 2, nil, false},
		{"offline without a source", []string{"verify", "--offline", quote}, 2, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, bins.shelter, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.stdout)
				}
			}
			if got := srv.Requests(); (len(got) > 0) != tc.fetch {
				t.Errorf("requests %v, fetch expected: %v", got, tc.fetch)
			}
		})
	}
}
