package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/runelet"
)

// An enclave container's workload is started by a request to its runelet, after which rune must
// record that it runs. The record is an empty marker file made before the request: creating it
// needs no data blocks and removing it needs no space, so a full disk can never leave a running
// workload recorded as "created" (which start, delete and the shim would then mishandle). Older
// states recorded the phase in enclave.json; both are read.
const startedMarker = "enclave.started"

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

// workloadStarted reports whether the workload of an enclave container was started.
func workloadStarted(root, id string, st *enclaveState) bool {
	if st.Phase == phaseRunning {
		return true
	}
	_, err := os.Stat(startedPath(root, id))
	return !errors.Is(err, fs.ErrNotExist)
}

// startWorkload starts the workload through the runelet, recording it first.
func startWorkload(root, id string) error {
	if err := markStarted(root, id); err != nil {
		return err
	}
	if _, err := runelet.Start(runeletSocket(root, id)); err != nil {
		unmarkStarted(root, id)
		return err
	}
	return nil
}
