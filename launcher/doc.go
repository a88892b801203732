// Package launcher starts, supervises and ends the processes of OCI containers on top of runc's
// libcontainer, with the command-line semantics of runc: stdio inheritance or pipes, console sockets,
// signal forwarding, pid files, preserved and socket-activation file descriptors, exit statuses.
//
// It is rune's CLI glue made testable. It must never change what libcontainer enforces (namespaces,
// cgroups, capabilities, seccomp): it only decides which process runs and how its I/O is wired.
package launcher
