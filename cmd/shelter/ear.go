package main

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/ear"
	"github.com/inclavare-containers/inclavare-go/shelter"
)

// earSigner signs --output ear tokens; set from --token-key when the output is chosen.
var earSigner crypto.Signer

func loadEARSigner(path string) error {
	if path == "" {
		return usageError("--output ear needs --token-key (the key relying parties will verify the token with)")
	}
	k, err := ear.LoadSigningKey(path)
	if err != nil {
		return usageError("--token-key: %v", err)
	}
	earSigner = k
	return nil
}

// writeEAR writes a verdict as an EAR JWT (one line): one submod "cpu0" for verify, "inclavared"
// and "container" for remoteattestation, each with the status shelter's verdict gives.
func writeEAR(w io.Writer, v any) error {
	subs := map[string]*ear.Appraisal{}
	switch r := v.(type) {
	case *shelter.Report:
		subs[ear.Submod] = appraisalOf(r)
	case *shelter.RemoteReport:
		subs["inclavared"], subs["container"] = appraisalOf(r.Inclavared), appraisalOf(r.Container)
	default:
		return fmt.Errorf("--output ear: nothing to write for %T", v)
	}
	tok := &ear.Token{Profile: ear.Profile, IssuedAt: time.Now().Unix(), Issuer: "shelter",
		VerifierID: ear.VerifierID{Developer: ear.Developer, Build: "shelter " + version}, Submods: subs}
	s, err := tok.Sign(earSigner)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, s)
	return err
}

func appraisalOf(r *shelter.Report) *ear.Appraisal {
	verified := r.Verified && len(r.Errors) == 0
	a := &ear.Appraisal{Status: ear.StatusOf(verified, r.Decided, r.OK)}
	if r.TEE != "" {
		rd, _ := hex.DecodeString(r.ReportData)
		res := &attestation.Result{TEE: attestation.TEE(r.TEE), Verified: r.Verified, TCBStatus: r.TCBStatus,
			Advisories: r.Advisories, Measurements: r.Measurements, ReportData: rd, Debug: r.Debug,
			ProductID: r.ProductID, SVN: r.SVN, Signer: r.Signer, Details: r.Details}
		a.AnnotatedEvidence = map[string]any{r.TEE: ear.Claims(res), "report_data": r.ReportData}
	}
	a.Violations = append(a.Violations, r.Errors...)
	for _, v := range r.Policy.Violations {
		a.Violations = append(a.Violations, v.Rule+": "+v.Message)
	}
	return a
}
