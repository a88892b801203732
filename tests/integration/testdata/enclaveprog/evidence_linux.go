//go:build linux

package main

import "github.com/inclavare-containers/inclavare-go/runelet"

// evidence asks the runelet over its in-container agent socket.
func evidence(rd [64]byte) ([]byte, error) {
	resp, err := runelet.Evidence(runelet.AgentSocket, rd[:])
	if err != nil {
		return nil, err
	}
	return resp.Evidence, nil
}

// resource asks the runelet for a resource of the enclave's key broker.
func resource(id string) ([]byte, error) {
	resp, err := runelet.Resource(runelet.AgentSocket, id)
	if err != nil {
		return nil, err
	}
	return resp.Resource, nil
}
