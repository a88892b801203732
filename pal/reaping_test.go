package pal_test

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// TestReapingWithSIGCHLDWatched checks the claim in the package doc: the Go
// runtime reaps only the children it started, even when os/signal watches
// SIGCHLD, so a PAL's waitpid and os/exec's Wait both get their own
// children's statuses while both run at once.
func TestReapingWithSIGCHLDWatched(t *testing.T) {
	sigchld := make(chan os.Signal, 128)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)

	lib := loadRef(t, paltest.Options{Version: 2})
	mustInit(t, lib)
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			want := 10 + i
			proc, err := lib.Spawn(t.Context(), enclave.Process{Path: "/bin/sh", Args: []string{"sh", "-c", "exit " + strconv.Itoa(want)}})
			if err != nil {
				errs <- err
				return
			}
			if code, err := proc.Wait(); err != nil || code != want {
				errs <- errors.New("PAL child: exit " + strconv.Itoa(code) + ", want " + strconv.Itoa(want))
			}
		}()
		go func() {
			defer wg.Done()
			want := 30 + i
			err := exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(want)).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != want {
				errs <- errors.New("os/exec child: " + err.Error() + ", want exit " + strconv.Itoa(want))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	<-sigchld // Notify was really in force
	must(t, lib.Destroy())
}
