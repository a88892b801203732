// Package shelter is the logic of the tenant-side shelter CLI: it verifies evidence (quotes, SNP
// reports, sim evidence, RA-TLS certificates) offline against an optional reference-value policy,
// and runs remote attestation of inclavared and the confidential container behind it.
//
// It reports what verified and what did not, for humans and scripts; its verdict (Report.OK) is
// true only when the evidence verified to a trusted root and, when a policy was given, the policy
// held. It never reports a policy as checked when none was given, and never turns a verification
// error into a pass.
package shelter
