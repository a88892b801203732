package enclavehost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

// Files of an enclave container in rune's state directory for it (<root>/<id>), beside
// libcontainer's state.
const (
	// StateFile records the container's enclave settings, its measurement and its phase.
	StateFile = "enclave.json"
	// HostSocket is the runelet's host socket: PID 1 serves the agent protocol on it.
	HostSocket = "runelet.sock"
	// startedMarker records that the workload was started (see MarkStarted).
	startedMarker = "enclave.started"
)

// Phases of an enclave container as rune records them. libcontainer sees the runelet running from
// create on; "created" keeps runc's view until start runs the workload.
const (
	PhaseCreated = "created"
	PhaseRunning = "running"
)

// State is <root>/<id>/enclave.json.
type State struct {
	Settings    enclave.Settings `json:"settings"`
	Measurement string           `json:"measurement"`
	Phase       string           `json:"phase"`
}

func statePath(root, id string) string { return filepath.Join(root, id, StateFile) }

// Socket is the path of the runelet's host socket of container id.
func Socket(root, id string) string { return filepath.Join(root, id, HostSocket) }

// LoadState returns the enclave state of container id, or nil, nil for an ordinary container.
func LoadState(root, id string) (*State, error) {
	data, err := os.ReadFile(statePath(root, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("enclave state of %s: %w", id, err)
	}
	return &st, nil
}

func (st *State) save(root, id string) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := statePath(root, id)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// An enclave container's workload is started by a request to its runelet, after which rune must
// record that it runs. The record is an empty marker file made before the request: creating it
// needs no data blocks and removing it needs no space, so a full disk can never leave a running
// workload recorded as "created" (which start, delete and the shim would then mishandle). Older
// states recorded the phase in enclave.json; both are read.

func startedPath(root, id string) string { return filepath.Join(root, id, startedMarker) }

// markStarted records that the workload is being started.
func markStarted(root, id string) error {
	f, err := os.OpenFile(startedPath(root, id), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// unmarkStarted takes the record back after a start that did not happen.
func unmarkStarted(root, id string) { _ = os.Remove(startedPath(root, id)) }

// Started reports whether the workload of enclave container id was started: until then, its
// runelet runs but the container is "created", as runc's would be.
func (st *State) Started(root, id string) bool {
	if st.Phase == PhaseRunning {
		return true
	}
	_, err := os.Stat(startedPath(root, id))
	return !errors.Is(err, fs.ErrNotExist)
}

// StartWorkload starts the workload of enclave container id through its runelet, recording it
// first.
func StartWorkload(ctx context.Context, root, id string) error {
	if err := markStarted(root, id); err != nil {
		return err
	}
	if _, err := agent.Start(ctx, Socket(root, id)); err != nil {
		unmarkStarted(root, id)
		return err
	}
	return nil
}
