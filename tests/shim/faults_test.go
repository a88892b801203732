package shim

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testFaults: a container's PID 1 or its shim killed with SIGKILL. containerd must report the truth
// (the task stopped with 137, or gone with its shim), and nothing may leak: no process, no rune state.
func testFaults(t *testing.T, s *suite) {
	t.Run("kill -9 of PID 1", func(t *testing.T) {
		for _, tc := range []struct {
			id    string
			flags []string
			cmd   []string
		}{
			{"pid1-plain", nil, []string{"sleep", "600"}},
			{"pid1-enclave", enclaveEnv, []string{"/app/prog.wasm", "sleep"}},
		} {
			s.startDetached(t, tc.flags, tc.id, tc.cmd...)
			before := s.WaitTaskStatus(t, tc.id, "RUNNING")
			if err := unix.Kill(before.Pid, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			s.WaitTaskStatus(t, tc.id, "STOPPED")
			res := s.CtrCmd(t, "task", "delete", tc.id)
			if m := ctrDeleteExit.FindStringSubmatch(res.Stderr); res.ExitCode != 0 || m == nil || m[1] != "137" {
				t.Fatalf("%s: ctr task delete after kill -9 of PID 1: %s, want exit code 137", tc.id, res)
			}
			if _, err := os.Stat(filepath.Join(s.runeStateRoot(), tc.id)); err == nil {
				t.Errorf("%s: rune state left behind", tc.id)
			}
		}
	})
	t.Run("kill -9 of the shim", func(t *testing.T) {
		for _, tc := range []struct {
			id    string
			flags []string
			cmd   []string
		}{
			{"shim-plain", nil, []string{"sleep", "600"}},
			{"shim-enclave", enclaveEnv, []string{"/app/prog.wasm", "sleep"}},
		} {
			s.startDetached(t, tc.flags, tc.id, tc.cmd...)
			before := s.WaitTaskStatus(t, tc.id, "RUNNING")
			shim := shimPid(t, before.Pid)
			if err := unix.Kill(shim, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// containerd notices the dead shim, runs its cleanup (`delete`, which force-deletes the
			// container with rune) and forgets the task.
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, listed := s.Task(t, tc.id)
				alive := unix.Kill(before.Pid, 0) == nil
				_, stateErr := os.Stat(filepath.Join(s.runeStateRoot(), tc.id))
				if !listed && !alive && stateErr != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s after kill -9 of its shim: task listed %v, PID 1 (%d) alive %v, rune state present %v",
						tc.id, listed, before.Pid, alive, stateErr == nil)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
}
