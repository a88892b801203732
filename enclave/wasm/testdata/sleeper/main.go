// Command sleeper is a WASI test program that never ends by itself: the tests stop it with a
// signal. Its argument picks how it waits.
package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

var sink uint64

func main() {
	mode := "spin"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	fmt.Println("ready")
	switch mode {
	case "spin": // pure computation, never calling the host
		for i := uint64(0); ; i++ {
			sink += i * i
		}
	case "sleep": // one long sleep in poll_oneoff
		time.Sleep(time.Hour)
	case "stdin": // blocked reading stdin
		io.ReadAll(os.Stdin)
		fmt.Println("stdin closed")
	}
}
