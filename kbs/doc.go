// Package kbs speaks the KBS attestation protocol of Confidential Containers' trustee (the
// Request-Challenge-Attestation-Response handshake over HTTPS, "RCAR"): its wire messages, the
// binding of a challenge nonce and the TEE's ephemeral key into evidence, the TEE key's JWK forms,
// the JWE a released resource travels in, and a client (the guest side) that attests with this
// repository's evidence and fetches resources. verdictd is the broker side.
//
// What a TEE must bind: its report data is the SHA-384 digest of the RFC 8785 canonical JSON of
// {"additional-evidence", "nonce", "tee-pubkey"} (protocol 0.3.0 and later; 0.2.0 had only
// "nonce" and "tee-pubkey"), zero-padded to 64 bytes, exactly as trustee and guest-components
// compute it. A key that the evidence does not bind therefore never receives a resource.
//
// This package never decides whether evidence is acceptable (the attestation packages and a
// policy do) and never releases anything: it builds and checks messages. Parsers of what the
// other side sends (JWK, JWE, evidence wrappers) fail closed: anything they do not fully
// understand is an error.
package kbs
