package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
)

// withoutCarrier drops RUNE_CARRIER and RUNE_CARRIER_SEAL from the environment of a process to
// exec: clients such as ctr pass the container's own environment, and the variables are
// instructions to the shim (the conversion removed them from the container's), not input to
// the workload.
func withoutCarrier(spec *anypb.Any) (*anypb.Any, error) {
	// Both variables start with RUNE_CARRIER: a spec without it needs no decoding.
	if spec == nil || !bytes.Contains(spec.GetValue(), []byte(carrierclient.EnvCarrier)) {
		return spec, nil
	}
	var p specs.Process
	if err := json.Unmarshal(spec.GetValue(), &p); err != nil {
		return nil, fmt.Errorf("decode the process to exec: %w", err)
	}
	p.Env = slices.DeleteFunc(p.Env, carrierclient.IsCarrierEnv)
	value, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("encode the process to exec: %w", err)
	}
	return &anypb.Any{TypeUrl: spec.GetTypeUrl(), Value: value}, nil
}
