package enclave

import (
	"fmt"
	"os"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// The enclave settings of the Inclavare Containers contract: a process env variable, else the annotation.
const (
	EnvType     = "ENCLAVE_TYPE"
	EnvPath     = "ENCLAVE_RUNTIME_PATH"
	EnvArgs     = "ENCLAVE_RUNTIME_ARGS"
	EnvLogLevel = "ENCLAVE_RUNTIME_LOGLEVEL"
	EnvRAType   = "ENCLAVE_RA_TYPE"

	AnnotationType     = "enclave.type"
	AnnotationPath     = "enclave.runtime.path"
	AnnotationArgs     = "enclave.runtime.args"
	AnnotationLogLevel = "enclave.runtime.loglevel"
	AnnotationRAType   = "enclave.attestation.ra_type"
)

// LogLevels are the accepted ENCLAVE_RUNTIME_LOGLEVEL values, as the original PAL API defines them.
var LogLevels = []string{"off", "panic", "fatal", "error", "warning", "info", "debug", "trace"}

// Settings are an enclave container's enclave configuration.
type Settings struct {
	Type        tee.TEE  `json:"type"`
	RuntimePath string   `json:"runtime_path"`
	Args        []string `json:"args,omitempty"`
	LogLevel    string   `json:"log_level"`
	RAType      string   `json:"ra_type,omitempty"`
	// KBS, when set, is the key broker the enclave's secrets come from.
	KBS *KBS `json:"kbs,omitempty"`
}

// IsSettingsEnv reports whether kv ("KEY=VALUE") is one of the enclave settings, which the workload
// must never see: not in its own environment, nor in an exec'd process's (clients copy the
// container's environment into every exec).
func IsSettingsEnv(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	switch k {
	case EnvType, EnvPath, EnvArgs, EnvLogLevel, EnvRAType, EnvKBSURL, EnvKBSPin, EnvKBSCA, EnvSecrets, EnvLayers:
		return true
	}
	return false
}

// FromSpec reads the enclave settings of spec and removes the ENCLAVE_* variables from the process
// environment, so the workload does not see them. It returns nil for an ordinary container.
func FromSpec(spec *specs.Spec) (*Settings, error) {
	vals := map[string]string{}
	found := map[string]bool{}
	if spec.Process != nil {
		kept := spec.Process.Env[:0:0]
		for _, kv := range spec.Process.Env {
			if IsSettingsEnv(kv) {
				k, v, _ := strings.Cut(kv, "=")
				vals[k], found[k] = v, true
				continue
			}
			kept = append(kept, kv)
		}
		spec.Process.Env = kept
	}
	for env, ann := range map[string]string{
		EnvType: AnnotationType, EnvPath: AnnotationPath, EnvArgs: AnnotationArgs,
		EnvLogLevel: AnnotationLogLevel, EnvRAType: AnnotationRAType,
		EnvKBSURL: AnnotationKBSURL, EnvKBSPin: AnnotationKBSPin, EnvKBSCA: AnnotationKBSCA, EnvSecrets: AnnotationSecrets,
		EnvLayers: AnnotationLayers,
	} {
		if v, ok := spec.Annotations[ann]; ok && !found[env] {
			vals[env], found[env] = v, true
		}
	}
	if !found[EnvType] {
		for _, k := range []string{EnvPath, EnvArgs, EnvLogLevel, EnvKBSURL, EnvKBSPin, EnvKBSCA, EnvSecrets, EnvLayers} {
			if found[k] {
				return nil, fmt.Errorf("%s is set but %s is not: say which TEE the enclave runs in", k, EnvType)
			}
		}
		return nil, nil
	}
	s := &Settings{
		Type:        tee.TEE(vals[EnvType]),
		RuntimePath: vals[EnvPath],
		LogLevel:    vals[EnvLogLevel],
		RAType:      vals[EnvRAType],
	}
	if a := vals[EnvArgs]; a != "" {
		s.Args = strings.Split(a, ",")
	}
	if s.LogLevel == "" {
		s.LogLevel = "info"
	}
	kbs, err := parseKBS(vals)
	if err != nil {
		return nil, err
	}
	s.KBS = kbs
	if err := s.Validate(); err != nil {
		return nil, WithKind(KindInvalid, err)
	}
	return s, nil
}

// Validate checks the settings on their own, without the host: type, runtime, log level.
func (s *Settings) Validate() error {
	switch s.Type {
	case tee.SGX, tee.TDX, tee.SNP, tee.Sim:
	case "":
		return fmt.Errorf("%s is empty", EnvType)
	default:
		return fmt.Errorf("unknown enclave type %q in %s (known: %s, %s, %s, %s)", s.Type, EnvType, tee.SGX, tee.TDX, tee.SNP, tee.Sim)
	}
	r, err := ParseRuntimePath(s.RuntimePath)
	if err != nil {
		return err
	}
	if err := r.checkTEE(s.Type); err != nil {
		return err
	}
	if s.KBS != nil {
		if r.IsPAL() {
			return errKBSNeedsBuiltin
		}
		if err := s.KBS.Validate(); err != nil {
			return err
		}
	}
	for _, l := range LogLevels {
		if s.LogLevel == l {
			return nil
		}
	}
	return fmt.Errorf("invalid %s %q (one of %s)", EnvLogLevel, s.LogLevel, strings.Join(LogLevels, ", "))
}

// CheckHost verifies that the TEE the settings ask for is present on this machine.
func (s *Settings) CheckHost() error {
	devs := tee.Devices(s.Type)
	if devs == nil {
		return nil
	}
	for _, d := range devs {
		if _, err := os.Stat(d); err == nil {
			return nil
		}
	}
	if s.Type != tee.SGX {
		if _, err := os.Stat(tee.TSMReportDir); err == nil {
			return nil
		}
		devs = append(devs, tee.TSMReportDir)
	}
	return WithKind(KindHardwareAbsent, fmt.Errorf("enclave type %q needs TEE hardware that this host does not have (none of %s exists); use %s=%s to run without hardware",
		s.Type, strings.Join(devs, ", "), EnvType, tee.Sim))
}
