// Package runelet is the init-runelet: the PID 1 of an enclave container, which drives an enclave
// runtime instead of exec-ing the workload; the exec'd runelet that `rune exec` starts; and the
// agent protocol through which rune (create, start, attest, PAL exec) talks to PID 1.
//
// Two sockets serve the same protocol: one in rune's state directory on the host, handed to PID 1 as
// a listening file descriptor (operations: ready, start, attest, evidence, and exec for a PAL, on a
// connection rune opened and handed to the exec'd runelet), and one inside the container at
// AgentSocket for the workload's own evidence requests (evidence only). An exec'd process never
// gets more than the exec spec gave the exec'd runelet: built-in runtimes run it in that runelet,
// and PID 1 runs a PAL exec only for a runelet whose confinement is PID 1's own. The runelet never
// runs a workload outside the configured enclave runtime, and never holds the sim platform key:
// only the per-enclave key that the platform endorsed.
package runelet
