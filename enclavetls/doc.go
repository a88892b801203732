// Package enclavetls is Enclave-TLS: TLS 1.3 (crypto/tls) in which each side's certificate carries
// TEE evidence that binds the certificate's public key, verified inside the handshake against a
// reference-value policy.
//
// # Certificate format
//
// Certificates follow the interoperable RA-TLS format (CCC Attestation SIG, as implemented by
// rats-tls since 2023 and Gramine): self-signed, a fresh ECDSA P-256 key per Identity (per
// process), and
//
//   - extension 2.23.133.5.4.9 (tcg-dice-tagged-evidence, non-critical) whose value is the CBOR
//     #6.<tag>([ evidence: bstr, claims-buffer: bstr ]); the tag names the evidence format
//     (60000 Intel SGX/TDX quote, 0x1a7504 AMD SEV-SNP report, TagSim for the simulated TEE);
//   - claims-buffer is a CBOR map of text names to byte strings, with "pubkey-hash" =
//     bstr(CBOR [hash-alg-id, hash]) over the certificate's SubjectPublicKeyInfo DER (SHA-256,
//     384 or 512: IANA hash IDs 1, 7, 8), optionally "nonce", and any application claims;
//   - the evidence's 64 bytes of report data are SHA-256(claims-buffer) followed by 32 zero bytes;
//   - extension 2.23.133.5.4.2 (tcg-dice-endorsement-manifest, optional) carries SGX/TDX
//     collateral as #6.60000([version, tcb-info, tcb-issuer-chain, pck-crl, root-ca-crl,
//     pck-crl-issuer-chain, qe-identity, qe-identity-issuer-chain, ? creation-datetime]),
//     handed to the verifier as extra collateral (it is signed by Intel, so it adds no trust).
//
// Certificates of the older sgx-ra-tls / Enclave-TLS format are read too (FormatLegacy): raw
// evidence in 1.2.840.113741.1337.6 (SGX ECDSA quote), .8 (TDX quote) or .20 (SNP report), whose
// report data is SHA-256 of the key (PKCS#1 RSAPublicKey for RSA, SubjectPublicKeyInfo for EC)
// followed by zeros. EPID (.2–.5), local reports (.14), SEV (.22) and CSV (.24) are refused with
// the reason.
//
// # Verification
//
// VerifyCertificate checks the self-signature and validity window, the evidence with the TEE's
// verifier (signatures, chain to a pinned or caller-given root, collateral), that the tag and the
// evidence agree, that the pubkey-hash claim is the certificate key's and that the report data is
// exactly the claims hash. Verifier adds a policy (attestation/policy) and an optional check of the
// caller's own. In a connection this runs in VerifyConnection, on the certificate crypto/tls
// parsed: a peer with no evidence, bad evidence, evidence for another key, or a policy violation
// fails the handshake, in both directions. Session resumption is off (a resumed session would
// present no certificate).
//
// With mutual attestation, mind TLS 1.3's order: a client's handshake completes when it has sent
// its certificate, before the server has checked it. A client learns of its rejection on its
// first read (a "bad certificate" alert), so a client must see an answer before it treats the
// server as having accepted it.
//
// # Verdict cache
//
// A Verifier remembers the certificates it accepted (CacheSize, DefaultCacheSize by default,
// least recently used out), so that a peer presenting its cached certificate again is not
// verified again: its evidence, key binding and self-signature were checked once, and crypto/tls
// still checks in every handshake that the peer holds the certificate's key (CertificateVerify).
// A remembered verdict is used only when all of these hold:
//
//   - the certificate is the same, byte for byte: the key is SHA-256 over its full DER, the TEE
//     options the verdict was reached with (sim, Intel and AMD roots, the verifier's collateral and
//     peer collateral, AllowTrailingData) and the nonce. Another certificate with the same key or
//     the same evidence is verified in full;
//   - no nonce is asked for: a verification that must bind a nonce (RequireFresh, a caller's
//     nonce, a mutual challenge) always checks the evidence, and never stores a verdict;
//   - the TEE verifier said how long its verdict holds: Result.ValidUntil, the earliest time at
//     which the same evidence with the same inputs would stop verifying or verify differently.
//     Sim: the platform certificate's notAfter. SGX and TDX: the earliest notAfter of the PCK
//     chain and of the TCB Signing chains, and nextUpdate of the TCB info, the QE identity and
//     every CRL applied. SNP: the earliest notAfter of the VCEK/VLEK -> ASK/ASVK -> ARK chain
//     and nextUpdate of every CRL applied. Both also stop at the start of an input not yet
//     valid (a newer TCB info, another candidate certificate), which could change the verdict.
//     A verdict without ValidUntil is never stored;
//   - the verification time (Options.Time, on the wall clock: a clock set back or forward is
//     seen) lies in [verifiedAt, until), until being the earliest of the certificate's notAfter,
//     ValidUntil and verifiedAt + MaxVerdictAge (10 minutes);
//   - with a collateral Source, it is the same Source (the same pointer, list or value); a
//     Source that cannot be told from another (a function) gets no verdicts remembered.
//
// A verdict that rests on collateral (Result.Collateral) is judged again on every use: the copy a
// reuse gets has Collateral.CheckedAt set to the reuse time, so the policy's max_collateral_age
// measures the collateral's age at that moment and refuses a verdict whose collateral has grown
// too old since it was stored, exactly as a fresh verification then would (everything dated that
// the verdict rests on still holds before ValidUntil, and nothing else in CollateralInfo changes
// with time); require_crl is judged on the stored RevocationChecked, which a fresh verification
// with the same inputs would report again. Peer.VerifiedAt stays the time the evidence was
// checked. With a collateral Source, a reused verdict the policy refuses is not final: the
// certificate is verified again with what the Source serves now (younger collateral may pass),
// so that the cache never refuses what a verification at that time would accept.
//
// A collateral Source (Intel PCS or a PCCS, AMD KDS) is not asked again while a verdict is
// reused. PCS clients keep collateral until its own nextUpdate; a verdict here never outlives
// the collateral it rests on and lasts at most MaxVerdictAge, so a revocation or TCB info the
// service publishes in between is seen by the first verification after MaxVerdictAge when the
// Source fetches afresh (a Source with an on-disk cache, attestation/collateral's, serves what
// it holds until that document's nextUpdate anyway: the verdict cache adds no delay to it).
//
// Only accepted certificates are stored, after the policy and Check accepted them; the policy
// and Check run again on every use, so a changed policy applies at once. The cache belongs to its
// Verifier: verifiers never share verdicts. Peer.VerifiedAt is when the verdict was reached.
//
// # Freshness
//
// A cached certificate proves that a genuine TEE made this key within the certificate's validity;
// it can be replayed by whoever holds the key. When a Verifier sets RequireFresh, the peer's
// evidence must bind a nonce of this connection, chosen by the verifier, before the handshake
// completes:
//
//   - client verifies server: the client offers one extra ALPN protocol,
//     NonceProtocolPrefix + base64url(32 random bytes). The server reads it in
//     GetConfigForClient and answers with a certificate made for this connection whose claims
//     carry it as "nonce" (the interoperable format's pre-session freshness claim). The client
//     requires claims["nonce"] == its nonce. A replayed certificate carries another nonce and
//     fails. (ALPN is the one client-chosen value crypto/tls shows a server before it picks its
//     certificate; the name never wins negotiation against a real protocol.)
//   - server verifies client (mutual attestation): the server's certificate for this connection
//     carries a random "enclave-tls-challenge" claim, bound by the server's own evidence; the
//     client reads it when it verifies the server (TLS 1.3 sends the client certificate after
//     that) and makes its certificate for this connection with the challenge as "nonce".
//
// Fresh certificates cost one evidence and one signature per connection (certificates are encoded
// from a shape crypto/x509 made once per identity; see certShape); without RequireFresh the
// cached certificate is used and renewed at half its validity (DefaultValidity). Any client can
// ask for a fresh certificate by sending a nonce, so a server whose evidence is expensive (a
// hardware quote) should bound its connection rate (inclavared bounds concurrent connections). Post-handshake
// challenges over the connection (nonce ‖ exported keying material) were rejected because they
// need framing of their own on the TLS stream, which peers of the standard format do not speak,
// and verification would no longer be part of the handshake.
//
// This package never lets a connection complete with an unverified peer, never trusts a root or a
// key carried by the peer, and never exposes the identity's private key.
package enclavetls
