package wasm

import (
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// EvidenceFunc produces attestation evidence whose report data is reportData. The runelet sets
// one (SetEvidenceFunc) so that a wasm workload can ask for evidence binding its own data, such
// as a TLS public key hash, through the inclavare.get_evidence import.
type EvidenceFunc = func(ctx context.Context, reportData [64]byte) ([]byte, error)

// Host module and function names of the attestation import; docs/wasm-abi.md is the ABI.
const (
	evidenceModuleName   = "inclavare"
	evidenceFunctionName = "get_evidence"
	reportDataSize       = 64
)

// WASI errno values (wasi_snapshot_preview1 "errno") returned by get_evidence.
const (
	errnoSuccess = 0
	errnoFault   = 21 // a pointer or length leaves linear memory
	errnoInval   = 28 // report_data_len is not 64
	errnoIO      = 29 // the evidence hook failed
	errnoNoSys   = 52 // no evidence hook is configured
	errnoRange   = 68 // out_cap is too small; *out_len holds the size needed
)

// hostHooks are what the "inclavare" host module calls; each is read on every call, so the runelet
// may set them after Init.
type hostHooks struct {
	evidence func() EvidenceFunc
	resource func() ResourceFunc
}

// instantiateEvidenceModule adds the "inclavare" host module to rt: get_evidence and get_resource.
func instantiateEvidenceModule(ctx context.Context, rt wazero.Runtime, hooks hostHooks) error {
	i32 := api.ValueTypeI32
	_, err := rt.NewHostModuleBuilder(evidenceModuleName).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			stack[0] = uint64(getEvidence(ctx, mod.Memory(), hooks.evidence(),
				api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2]),
				api.DecodeU32(stack[3]), api.DecodeU32(stack[4])))
		}), []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("report_data_ptr", "report_data_len", "out_ptr", "out_cap", "out_len_ptr").
		WithResultNames("errno").
		Export(evidenceFunctionName).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			stack[0] = uint64(getResource(ctx, mod.Memory(), hooks.resource(),
				api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2]),
				api.DecodeU32(stack[3]), api.DecodeU32(stack[4])))
		}), []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("id_ptr", "id_len", "out_ptr", "out_cap", "out_len_ptr").
		WithResultNames("errno").
		Export(resourceFunctionName).
		Instantiate(ctx)
	return err
}

// getEvidence implements inclavare.get_evidence against the caller's linear memory. Every guest
// pointer is checked before the hook runs, so a bad call costs no evidence generation.
func getEvidence(ctx context.Context, mem api.Memory, hook EvidenceFunc, rdPtr, rdLen, outPtr, outCap, outLenPtr uint32) uint32 {
	if rdLen != reportDataSize {
		return errnoInval
	}
	if mem == nil {
		return errnoFault
	}
	rd, ok := mem.Read(rdPtr, rdLen)
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
	var reportData [reportDataSize]byte
	copy(reportData[:], rd)
	evidence, err := hook(ctx, reportData)
	if err != nil {
		return errnoIO
	}
	return writeOut(mem, evidence, outPtr, outCap, outLenPtr)
}

// writeOut stores data's length at outLenPtr and, when it fits in outCap, data at outPtr.
func writeOut(mem api.Memory, data []byte, outPtr, outCap, outLenPtr uint32) uint32 {
	if uint64(len(data)) > uint64(^uint32(0)) {
		return errnoIO
	}
	if !mem.WriteUint32Le(outLenPtr, uint32(len(data))) {
		return errnoFault
	}
	if uint32(len(data)) > outCap {
		return errnoRange
	}
	if !mem.Write(outPtr, data) {
		return errnoFault
	}
	return errnoSuccess
}
