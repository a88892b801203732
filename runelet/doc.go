// Package runelet is the init-runelet: the PID 1 of an enclave container, which drives an enclave
// runtime instead of exec-ing the workload, and the agent protocol through which rune (create, start,
// attest) and exec'd runelets (exec) talk to it.
//
// Two sockets serve the same protocol: one in rune's state directory on the host, handed to PID 1 as
// a listening file descriptor (operations: ready, start, attest, exec), and one inside the container
// at AgentSocket for exec'd runelets and for the workload's own evidence requests (operations: exec,
// evidence). The runelet never runs a workload outside the configured enclave runtime, and never
// holds the sim platform key: only the per-enclave key that the platform endorsed.
package runelet
