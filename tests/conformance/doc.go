// Package conformance runs the OCI runtime-tools validation suite against
// rune and runc (through run.sh) and fails when a validation program that
// passes under runc fails under rune.
//
// It holds no Go code of its own beyond the test: the suite is built by
// run.sh from a separate tools module (tools/go.mod) so that runtime-tools'
// old dependency pins never enter the main module. It must never vendor or
// copy runtime-tools code, and it never changes the host outside the
// temporary bundles and cgroups the suite itself creates.
package conformance
