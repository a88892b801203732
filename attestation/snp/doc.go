// Package snp verifies AMD SEV-SNP attestation reports (version 2 and later) and, inside an SNP
// guest, produces them.
//
// Evidence is the raw ATTESTATION_REPORT (0x4A0 bytes), optionally followed by the extended-report
// certificate table (GUID, offset, length entries ending in an all-zero entry, then the blobs), as
// configfs-tsm's outblob+auxblob or SNP_GET_EXT_REPORT return it.
//
// Verification is parse → verify, following go-sev-guest's split (its abi, kds and verify packages
// do the byte layout, product names and the ECDSA check; this package adds what v0.15 lacks: a
// certificate-table parser safe on hostile input, Turin's TCB layout and fmcSPL extension, and the
// trust decisions below):
//   - the VCEK or VLEK (by KEY_INFO) comes from Options.Collateral (DER or PEM, recognised by
//     content) or the report's certificate table;
//   - it must chain VCEK → ASK (VLEK → ASVK) → ARK of the product line the certificate names (and,
//     for v3+ reports, the CPUID in the report), where the ARK is one of AMD's built-in roots
//     pinned by SHA-256 of their DER, or a root the caller passed in Options.Roots; intermediates
//     come from the built-in chains or collateral;
//   - a VCEK's hwID must equal CHIP_ID (unless the firmware masked it), the certificate's TCB must
//     equal REPORTED_TCB, and the report signature over bytes 0x000–0x29F must verify;
//   - an AMD CRL (DER or PEM) in the collateral that the chain's ARK signed is applied: a revoked
//     ASK/ASVK, a bad CRL signature or a CRL not valid at the verification time fails.
//     Details["crl_checked"] tells whether one was applied.
//
// This package never trusts a root certificate carried by the evidence, never fetches anything
// from the network (no KDS, no CRL download: pass certificates and CRLs as collateral), and makes no policy
// decision: debug, measurements and TCB levels are reported in the Result for attestation/policy.
// SNP has no TCB-status service, so Result.TCBStatus is always "".
package snp
