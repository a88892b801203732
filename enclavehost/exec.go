package enclavehost

import (
	"os"
	"strings"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

// Exec is one `rune exec` in an enclave container. The exec'd runelet, which the launcher confines
// exactly as the exec's process says, runs the command in the enclave runtime: a built-in runtime
// in the exec'd runelet itself. A PAL's enclave lives in PID 1, which runs exec'd processes only
// when asked over its host socket, out of the container's reach: rune opens one connection for
// this exec and hands it to the exec'd runelet, and closes its own copy once the runelet runs, so
// that PID 1 sees the exec end with the runelet.
type Exec struct {
	cfg  agent.ExecConfig
	conn *os.File
}

// NewExec prepares an exec in enclave container id, whose state is st.
func NewExec(root, id string, st *State) (*Exec, error) {
	e := &Exec{cfg: agent.ExecConfig{Settings: st.Settings}}
	if st.Settings.Runtime().IsPAL() {
		conn, err := agent.DialExec(Socket(root, id))
		if err != nil {
			return nil, err
		}
		e.conn = conn
	}
	return e, nil
}

// Process returns the exec'd process's args and environment: the exec'd runelet running args,
// with no enclave setting and no exec config of the caller's (clients copy the container's
// environment into every exec).
func (e *Exec) Process(args, env []string) ([]string, []string) {
	kept := env[:0:0]
	for _, kv := range env {
		if !enclave.IsSettingsEnv(kv) && !strings.HasPrefix(kv, agent.EnvExec+"=") {
			kept = append(kept, kv)
		}
	}
	return agent.ExecArgs(args), kept
}

// Files are the descriptors the exec'd runelet must inherit, numbered from firstFD on, and the
// environment entry with its ExecConfig.
func (e *Exec) Files(firstFD int) ([]*os.File, string, error) {
	var files []*os.File
	if e.conn != nil {
		e.cfg.AgentFD = firstFD
		files = append(files, e.conn)
	}
	kv, err := agent.ExecEnv(&e.cfg)
	if err != nil {
		return nil, "", err
	}
	return files, kv, nil
}

// Close closes rune's copy of the connection to PID 1: once the exec'd runelet runs, or when the
// exec failed before it did.
func (e *Exec) Close() {
	if e.conn != nil {
		e.conn.Close()
	}
}
