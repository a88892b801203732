// Package inclavared is the node daemon of the attestation architecture: verifiers (shelter)
// connect to it over Enclave-TLS and verify its evidence; it forwards their requests to a
// confidential service (a unix or TCP socket) over mutually attested Enclave-TLS, checks that
// service against an upstream policy, and returns the service's evidence (its RA-TLS certificate)
// with its answers. The wire protocol is JSON, one object per message, compatible with the original
// Inclavare inclavared's GETENCLAVEINFO request; README.md describes it.
//
// inclavared never forwards anything to, and never returns answers from, an upstream whose
// attestation failed or whose policy did not hold: such a connection is never established. It never
// serves an unattested verifier unless told to (Config.AllowUnattestedClients, logged), because the
// upstream trusts inclavared's attestation as a proxy for its clients. It acts only on messages
// with exactly one reading (internal/strictjson), and bounds what any client can hold (limits.go):
// idle or half-open clients must never keep a verifier out.
package inclavared
