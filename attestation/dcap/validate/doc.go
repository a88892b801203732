// Package validate makes Intel's TCB decisions for verified DCAP evidence: it matches the
// platform's TCB (PCK certificate SGX components and PCESVN, and for TDX the TEE_TCB_SVN and the
// TDX module identity) against the TCB levels of a TCB info, matches the quoting enclave's report
// against a QE identity, and converges the results into one TCB status with its advisory IDs,
// following Intel's quote verification library.
//
// It must only be given values that the verify package has already authenticated; it never checks
// signatures or certificates itself, and it never accepts a TCB it cannot place (no matching
// level, unknown status, identity mismatch are errors).
package validate
