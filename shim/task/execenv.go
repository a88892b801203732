package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
)

// withoutCarrier drops RUNE_CARRIER from the environment of a process to exec: clients such
// as ctr pass the container's own environment, and the variable is an instruction to the
// shim (the conversion removed it from the container's), not input to the workload.
func withoutCarrier(spec *anypb.Any) (*anypb.Any, error) {
	prefix := carrierclient.EnvCarrier + "="
	if spec == nil || !bytes.Contains(spec.GetValue(), []byte(prefix)) {
		return spec, nil
	}
	var p specs.Process
	if err := json.Unmarshal(spec.GetValue(), &p); err != nil {
		return nil, fmt.Errorf("decode the process to exec: %w", err)
	}
	p.Env = slices.DeleteFunc(p.Env, func(kv string) bool { return strings.HasPrefix(kv, prefix) })
	value, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("encode the process to exec: %w", err)
	}
	return &anypb.Any{TypeUrl: spec.GetTypeUrl(), Value: value}, nil
}
