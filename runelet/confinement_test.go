package runelet

import (
	"os"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/agent"
	"golang.org/x/sys/unix"
)

// TestCheckCallerRefusesUnknownSender: an exec request whose sender the kernel did not name, or
// that came from outside the container's pid namespace (pid 0), never runs.
func TestCheckCallerRefusesUnknownSender(t *testing.T) {
	p := &pid1{cfg: &agent.Config{}}
	for _, cred := range []*unix.Ucred{nil, {Pid: 0}} {
		if err := p.checkCaller(cred); err == nil || !strings.Contains(err.Error(), "exec'd runelet inside the container") {
			t.Errorf("sender %+v: %v", cred, err)
		}
	}
	// This very process has its own confinement: accepted.
	if err := p.checkCaller(&unix.Ucred{Pid: int32(os.Getpid())}); err != nil {
		t.Errorf("own confinement refused: %v", err)
	}
}

func TestConfinementDifferences(t *testing.T) {
	enclave := &confinement{
		status: map[string]string{"Uid": "0 0 0 0", "CapEff": "00000000a80425fb", "CapBnd": "00000000a80425fb", "NoNewPrivs": "0", "Seccomp": "2", "Seccomp_filters": "1"},
		cgroup: "4:memory:/c\n0::/c",
	}
	same := &confinement{status: map[string]string{}, cgroup: enclave.cgroup}
	for k, v := range enclave.status {
		same.status[k] = v
	}
	if d := enclave.differences(same); len(d) != 0 {
		t.Fatalf("equal confinements differ: %v", d)
	}
	narrower := &confinement{
		status: map[string]string{"Uid": "1000 1000 1000 1000", "CapEff": "0000000000000000", "CapBnd": "00000000a80425fb", "NoNewPrivs": "1", "Seccomp": "2", "Seccomp_filters": "1"},
		cgroup: "4:memory:/c/sub\n0::/c",
	}
	got := strings.Join(enclave.differences(narrower), "; ")
	want := `Uid 0 0 0 0 (exec: 1000 1000 1000 1000); CapEff 00000000a80425fb (exec: 0000000000000000); NoNewPrivs 0 (exec: 1); cgroup "4:memory:/c" (exec: "4:memory:/c/sub")`
	if got != want {
		t.Fatalf("differences:\n got %s\nwant %s", got, want)
	}
}
