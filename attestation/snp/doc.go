// Package snp verifies AMD SEV-SNP attestation reports (version 2 and later) and, inside an SNP
// guest, produces them.
//
// Evidence is the raw ATTESTATION_REPORT (0x4A0 bytes), optionally followed by the extended-report
// certificate table (GUID, offset, length entries ending in an all-zero entry, then the blobs), as
// configfs-tsm's outblob+auxblob or SNP_GET_EXT_REPORT return it.
//
// Verification is parse → verify, following go-sev-guest's split (its abi package does the byte
// layout and the ECDSA check; this package adds what go-sev-guest lacks: a certificate-table parser
// safe on hostile input, the KDS extensions of every current product line including Turin's 8-byte
// hwID and fmcSPL, the per-line TCB_VERSION layouts, and the trust decisions below). Report
// versions 2 to 5 are read: CPUID_FAM_ID/MOD_ID/STEP from version 3, LAUNCH_MIT_VECTOR and
// CURRENT_MIT_VECTOR from version 5 (reserved, and required zero, before).
//   - the VCEK or VLEK (by KEY_INFO) comes from Options.Collateral (DER or PEM, recognised by
//     content) or the report's certificate table; a report with KEY_INFO.MASK_CHIP_KEY is unsigned
//     and refused;
//   - the certificate's productName names the product line (Milan, Genoa, Turin); for v3+ reports
//     the CPUID must name the same line. That line decides the ARK, the hwID length and the
//     TCB_VERSION layout (Milan/Genoa: BOOT_LOADER, TEE, 4 reserved, SNP, MICROCODE; Turin: FMC,
//     BOOT_LOADER, TEE, SNP, 3 reserved, MICROCODE);
//   - it must chain VCEK → ASK (VLEK → ASVK) → ARK of that line, where the ARK is one of AMD's
//     built-in roots pinned by SHA-256 of their DER, or a root the caller passed in
//     Options.AMDRoots; intermediates come from the built-in chains or collateral;
//   - a VCEK's hwID must match CHIP_ID as AMD specifies per line (Milan, Genoa: all 64 bytes equal;
//     Turin: the 8-byte hwID equals CHIP_ID[0:8] and the rest of CHIP_ID is zero) unless the host
//     masked CHIP_ID to zeros; the certificate's TCB, composed in the line's layout, must equal
//     REPORTED_TCB, no level of which may exceed CURRENT_TCB's; the report signature over bytes
//     0x000–0x29F must verify;
//   - an AMD CRL (DER or PEM) in the collateral that the chain's ARK signed is applied: a revoked
//     ASK/ASVK, a bad CRL signature or a CRL not valid at the verification time fails.
//     Details["crl_checked"] tells whether one was applied.
//   - Result.ValidUntil is the earliest notAfter of the chain and nextUpdate of the CRLs applied
//     (or the start of a candidate certificate not yet valid): the report is not dated, so the
//     verdict holds as long as those do (enclavetls's verdict cache reuses it until then).
//
// VerifyEndorsementKey checks a VCEK or VLEK certificate alone (everything above that needs no
// report), for `shelter verify vcek.der`.
//
// This package never trusts a root certificate carried by the evidence, never fetches anything
// from the network (no KDS, no CRL download: pass certificates and CRLs as collateral), and makes no policy
// decision: debug, measurements and TCB levels are reported in the Result for attestation/policy.
// SNP has no TCB-status service, so Result.TCBStatus is always "".
package snp
