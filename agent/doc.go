// Package agent is the contract between rune on the host and the init-runelet binary: where rune
// puts the runelet's files in an enclave container (Dir and below), the Config it hands PID 1 and
// the ExecConfig it hands an exec'd runelet, the agent protocol that PID 1 serves on its two
// sockets (one in rune's state directory, one in the container at ContainerSocket) with a
// context-first client for it, the request and response of `init-runelet prepare`, and the bounds
// both sides enforce on what crosses (message sizes, launch sizes, phase lines).
//
// Both binaries link it, and so do the workloads' own tools (the evidence and resource clients),
// so it must stay small: it must never import an enclave runtime, the PAL loader, libcontainer or
// anything that runs on only one side. Errors that cross the boundary keep their kind (Error).
package agent
