// Package verdictd is the tenant's key broker: it speaks the KBS attestation protocol (package kbs)
// over HTTPS and releases a secret only to a TEE whose evidence verified to a trusted root, binds
// the session's single-use nonce and the TEE's ephemeral key, and satisfies the policy of that
// secret; the secret travels encrypted to that key (JWE). Every release and refusal is logged
// with the TEE, the measurement and the rule that decided. cmd/verdictd is its command line.
//
// It fails closed and must never release otherwise: evidence that does not verify, a TEE other
// than the one the session was opened for, a nonce used twice (each /attest consumes it, failed
// or not), a session past its expiry, a key the evidence does not bind, a resource with no
// policy, a path that is not three plain components or that crosses a symlink: each is refused
// with the reason in trustee's error JSON and in the log. Sessions are bounded in number and time.
//
// KeyProvider is the tenant's ocicrypt key provider (gRPC, for skopeo's --encryption-key
// provider:verdictd:<repository>/<type>/<tag>): it wraps image layer keys (package layerkey) under
// a key-encryption key that is a resource of the same store, on loopback or a unix socket only. It
// must never unwrap unless configured to (AllowUnwrap, the tenant's own machine): layer keys are
// for attested enclaves, which fetch the KEK through the KBS protocol. Even then it never returns
// a layer key whose wrapped form does not authenticate under the KEK of its own kid.
//
// See README.md for the protocol as verdictd speaks it, where it departs from trustee, and the key
// provider.
package verdictd
