// Package security reproduces the attacks of the threat model (docs/threat-model.md) against the
// real binaries and libraries and shows that each fails, with the reason. Each test names the party
// it plays (node operator, pod author, network attacker) and the hole it proves closed. The
// container tests need root (run by make test as root; in CI a missing prerequisite fails).
package security
