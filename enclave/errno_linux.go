package enclave

import "syscall"

const errELOOP = syscall.ELOOP
