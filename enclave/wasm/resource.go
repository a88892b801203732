package wasm

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// ResourceFunc returns a resource of the enclave's key broker ("<repository>/<type>/<tag>"),
// fetched after attesting to it. The runelet sets one (SetResourceFunc) so that a wasm workload
// can fetch its secrets at run time through the inclavare.get_resource import.
type ResourceFunc = func(ctx context.Context, id string) ([]byte, error)

const (
	resourceFunctionName = "get_resource"
	maxResourceID        = 1024
)

// SetResourceFunc sets the hook behind inclavare.get_resource; nil makes the import return
// ENOSYS. It may be called at any time, also while workloads run.
func (r *Runtime) SetResourceFunc(f ResourceFunc) {
	r.evidenceMu.Lock()
	defer r.evidenceMu.Unlock()
	r.resource = f
}

func (r *Runtime) resourceFunc() ResourceFunc {
	r.evidenceMu.RLock()
	defer r.evidenceMu.RUnlock()
	return r.resource
}

// getResource implements inclavare.get_resource against the caller's linear memory: the same
// contract as get_evidence, with the resource's name (UTF-8, id_len bytes) instead of report data.
func getResource(ctx context.Context, mem api.Memory, hook ResourceFunc, idPtr, idLen, outPtr, outCap, outLenPtr uint32) uint32 {
	if idLen == 0 || idLen > maxResourceID {
		return errnoInval
	}
	if mem == nil {
		return errnoFault
	}
	id, ok := mem.Read(idPtr, idLen)
	if !ok {
		return errnoFault
	}
	if _, ok := mem.Read(outPtr, outCap); !ok {
		return errnoFault
	}
	if _, ok := mem.Read(outLenPtr, 4); !ok {
		return errnoFault
	}
	if hook == nil {
		return errnoNoSys
	}
	data, err := hook(ctx, string(id))
	if err != nil {
		return errnoIO
	}
	return writeOut(mem, data, outPtr, outCap, outLenPtr)
}
