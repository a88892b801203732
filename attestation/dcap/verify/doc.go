// Package verify checks the cryptography of Intel DCAP evidence: the PCK certificate chain up to
// the key-pinned Intel SGX Root CA, the quote signature by the attestation key, the QE report
// signature by the PCK key and the QE report data binding, the signatures, issuer chains and
// validity windows of TCB info and QE identity, and certificate revocation lists.
//
// It never decides whether a TCB level is acceptable (package validate does) and never parses raw
// bytes itself (package abi does). Every check fails closed: a missing or unverifiable piece is an
// error, never a silent pass.
package verify
