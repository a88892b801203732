// Command nonewprivs stands in for the nonewprivs image critest runs: installed set-user-ID
// root and run as another user, it prints its effective user ID, which is 0 unless the
// container's processes have no_new_privs set.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
