package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/ear"
)

// shelter verify --output ear writes the verdict as an EAR JWT signed with --token-key, in the
// format verdictd issues; the exit status is the same as for the other outputs.
func TestVerifyOutputEAR(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	s := newSimFiles(t, dir, "workload")
	good := writePolicy(t, dir, "good.json", s.measurement)
	bad := writePolicy(t, dir, "bad.json", strings.Repeat("0", 64))
	key, err := ear.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "token.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		status    ear.Status
		violation string
	}{
		{"policy holds", []string{"--policy", good}, 0, ear.Affirming, ""},
		{"policy fails", []string{"--policy", bad}, 1, ear.Contraindicated, "measurements.measurement"},
		{"no policy", nil, 3, ear.None, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"verify", "--sim-root", s.root, "--output", "ear", "--token-key", keyFile}, tc.args...)
			r := runBin(t, bins.shelter, append(args, s.evidence)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %s %s", r.code, tc.code, r.stdout, r.stderr)
			}
			tok, err := ear.Verify(strings.TrimSpace(r.stdout), &key.PublicKey, time.Now())
			if err != nil {
				t.Fatalf("%v: %q", err, r.stdout)
			}
			a := tok.Submods[ear.Submod]
			if a.Status != tc.status || (tc.violation != "" && (len(a.Violations) == 0 || !strings.Contains(a.Violations[0], tc.violation))) {
				t.Fatalf("appraisal %+v", a)
			}
			if tok.Profile != ear.Profile || tok.VerifierID.Developer != ear.Developer || a.AnnotatedEvidence["sim"] == nil {
				t.Fatalf("token %+v", tok)
			}
		})
	}
	r := runBin(t, bins.shelter, "verify", "--sim-root", s.root, "--output", "ear", s.evidence)
	if r.code != 2 || !strings.Contains(r.stderr, "--token-key") {
		t.Fatalf("ear without --token-key: exit %d %s", r.code, r.stderr)
	}
}
