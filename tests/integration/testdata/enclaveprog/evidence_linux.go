//go:build linux

package main

import (
	"context"

	"github.com/inclavare-containers/inclavare-go/agent"
)

// evidence asks the runelet over its in-container agent socket.
func evidence(rd [64]byte) ([]byte, error) {
	resp, err := agent.Evidence(context.Background(), agent.ContainerSocket, rd[:])
	if err != nil {
		return nil, err
	}
	return resp.Evidence, nil
}

// resource asks the runelet for a resource of the enclave's key broker.
func resource(id string) ([]byte, error) {
	resp, err := agent.Resource(context.Background(), agent.ContainerSocket, id)
	if err != nil {
		return nil, err
	}
	return resp.Resource, nil
}
