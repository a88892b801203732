// Package carrierclient is the shim's side of carriers (image → enclave image), linked into
// containerd-shim-rune-v2: which carriers exist, whether a container asks for one
// (RUNE_CARRIER), running the carrier helper (rune-carrier-helper, package shim/carrierhelper)
// that converts the bundle, and the environment `rune create` needs to verify the result.
//
// The conversion runs in a helper process, not in the shim: measuring, signing (possibly
// over HTTPS with a client key) and asking containerd for the image digest need code that
// would make every long-lived shim of every pod bigger, and keep signing credentials out
// of a process that lives as long as the pod. This package must stay small: it must never
// import package carrierhelper, enclavemanifest, TLS or HTTP code.
package carrierclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

const (
	// EnvCarrier in a container's environment selects the carrier. The conversion removes
	// it from the workload's environment: it is an instruction to the shim, not input to the
	// workload (and would otherwise be part of the measurement).
	EnvCarrier = "RUNE_CARRIER"
	// EnvCarrierSeal in a container's environment asks the carrier to seal the entrypoint
	// for the key broker's key-encryption key it names ("<repository>/<type>/<tag>"):
	// docs/sealed.md, "Sealing at conversion". Removed from the workload's environment like
	// EnvCarrier.
	EnvCarrierSeal = "RUNE_CARRIER_SEAL"
	// HelperName is the helper binary, looked for beside the shim binary, then on PATH.
	HelperName = "rune-carrier-helper"
)

// Carrier is one kind of conversion: the enclave runtime a workload is run in.
type Carrier struct {
	Name string
	// RuntimePath is the ENCLAVE_RUNTIME_PATH the carrier stands for. A container that names
	// another runtime itself is refused.
	RuntimePath string
	// DefaultType is the ENCLAVE_TYPE when the container names none.
	DefaultType tee.TEE
}

// carriers are those this build provides, by name. The built-in runtimes run on the sim TEE
// by default (docs/enclave-containers.md); builtin:wasm also runs in a TD or an SNP guest
// when the container says ENCLAVE_TYPE=tdx or snp.
var carriers = map[string]Carrier{
	"wasm":   {Name: "wasm", RuntimePath: enclave.WasmRuntime.String(), DefaultType: tee.Sim},
	"native": {Name: "native", RuntimePath: enclave.NativeRuntime.String(), DefaultType: tee.Sim},
}

// Names lists the carriers this build provides, sorted.
func Names() []string {
	names := make([]string, 0, len(carriers))
	for n := range carriers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup returns the carrier called name.
func Lookup(name string) (Carrier, bool) {
	c, ok := carriers[name]
	return c, ok
}

// Choose returns the carrier name names, if this build has it and cfg enables it.
func Choose(name string, cfg *config.Config) (Carrier, error) {
	c, ok := carriers[name]
	if !ok {
		return Carrier{}, fmt.Errorf("%s=%q: no such carrier in this shim (available: %s)", EnvCarrier, name, strings.Join(Names(), ", "))
	}
	if !slices.Contains(cfg.Carriers.Enabled, name) {
		enabled := "none"
		if len(cfg.Carriers.Enabled) > 0 {
			enabled = strings.Join(cfg.Carriers.Enabled, ", ")
		}
		return Carrier{}, fmt.Errorf("%s=%q: carrier %q is not enabled in the shim configuration (carriers.enabled: %s)", EnvCarrier, name, name, enabled)
	}
	return c, nil
}

// IsCarrierEnv reports whether kv ("KEY=VALUE") is an instruction to the carrier, which the
// workload never sees (nor an exec'd process, whose environment clients copy from the
// container's).
func IsCarrierEnv(kv string) bool {
	return strings.HasPrefix(kv, EnvCarrier+"=") || strings.HasPrefix(kv, EnvCarrierSeal+"=")
}

// SealRequestedIn returns the key id RUNE_CARRIER_SEAL names in env, if any; set twice to
// different values or empty is an error. The key id's syntax is the caller's to check.
func SealRequestedIn(env []string) (string, bool, error) {
	id, found, err := onlyValue(env, EnvCarrierSeal)
	if err == nil && found && id == "" {
		err = fmt.Errorf("%s is empty: name the key broker's key-encryption key, <repository>/<type>/<tag>", EnvCarrierSeal)
	}
	if err != nil {
		return "", false, err
	}
	return id, found, nil
}

// onlyValue returns the value of key in env (an OCI process environment) and whether it is
// there; set twice to different values is an error.
func onlyValue(env []string, key string) (string, bool, error) {
	value, found := "", false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, key+"=")
		if !ok {
			continue
		}
		if found && v != value {
			return "", false, fmt.Errorf("%s is set twice, to %q and %q", key, value, v)
		}
		value, found = v, true
	}
	return value, found, nil
}

// RequestedIn returns the carrier RUNE_CARRIER names in env (an OCI process environment); a
// RUNE_CARRIER_SEAL without it is an error.
func RequestedIn(env []string) (string, bool, error) {
	name, found, err := onlyValue(env, EnvCarrier)
	if err != nil {
		return "", false, err
	}
	if found && name == "" {
		return "", false, fmt.Errorf("%s is empty: name a carrier (available: %s)", EnvCarrier, strings.Join(Names(), ", "))
	}
	if !found {
		// A seal asked for without a carrier would be ignored (no conversion runs): the
		// entrypoint would stay in the clear, silently.
		if _, seal, err := SealRequestedIn(env); seal || err != nil {
			return "", false, fmt.Errorf("%s is set but %s is not set: sealing at conversion needs a carrier (available: %s)", EnvCarrierSeal, EnvCarrier, strings.Join(Names(), ", "))
		}
	}
	return name, found, nil
}

// Requested reports whether the container of bundle asks for a carrier, reading only the
// process environment of its config.json: the shim does nothing more for containers that do
// not.
func Requested(bundle string) (string, bool, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", false, fmt.Errorf("read the OCI spec: %w", err)
	}
	var spec struct {
		Process *struct {
			Env []string `json:"env"`
		} `json:"process"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", false, fmt.Errorf("decode the OCI spec: %w", err)
	}
	if spec.Process == nil {
		return "", false, nil
	}
	return RequestedIn(spec.Process.Env)
}

// ContainerdAddress is containerd's gRPC socket as containerd gave it to this shim: the
// shim's -address flag, else $GRPC_ADDRESS (set by containerd for its shims). Empty when
// neither is known.
func ContainerdAddress() string {
	if f := flag.Lookup("address"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	return os.Getenv("GRPC_ADDRESS")
}

// Request is what the shim asks rune-carrier-helper to convert (JSON on its stdin).
type Request struct {
	Bundle      string `json:"bundle"`
	ContainerID string `json:"container_id"`
	Namespace   string `json:"namespace"`
	// ConfigPath or ConfigBody locate the shim configuration in force, as for the shim.
	ConfigPath string `json:"config_path,omitempty"`
	ConfigBody []byte `json:"config_body,omitempty"`
	// RunePath is the rune binary the shim drives; the runelet that measures is beside it.
	RunePath string `json:"rune_path"`
	// ContainerdAddress is containerd's gRPC socket, asked for the container's image.
	ContainerdAddress string `json:"containerd_address,omitempty"`
	// LogLevel is the shim's: the helper logs at the same level.
	LogLevel string `json:"log_level,omitempty"`
}

// Result is rune-carrier-helper's answer (JSON on its stdout): what it did, or why it failed.
type Result struct {
	Error          string  `json:"error,omitempty"`
	Carrier        string  `json:"carrier,omitempty"`
	Measurement    string  `json:"measurement,omitempty"`
	RuntimePath    string  `json:"runtime_path,omitempty"`
	TEE            tee.TEE `json:"tee,omitempty"`
	Entrypoint     string  `json:"entrypoint,omitempty"`
	KeyID          string  `json:"key_id,omitempty"`
	Ephemeral      bool    `json:"ephemeral,omitempty"`
	ImageReference string  `json:"image_reference,omitempty"`
	ImageDigest    string  `json:"image_digest,omitempty"`
	// Cache is "hit" (nothing was measured), "miss" (measured, signed and stored) or "off"
	// (not cacheable; CacheNote says why).
	Cache     string `json:"cache,omitempty"`
	CacheNote string `json:"cache_note,omitempty"`
	// SealKeyID, when set, is the key-encryption key the entrypoint was sealed for
	// (RUNE_CARRIER_SEAL); SealedPlaintextSHA256 is the entrypoint's digest.
	SealKeyID             string `json:"seal_key_id,omitempty"`
	SealedPlaintextSHA256 string `json:"sealed_plaintext_sha256,omitempty"`
}

// Helper returns rune-carrier-helper: beside the shim binary shimExe, else on PATH.
func Helper(shimExe string) (string, error) {
	if shimExe != "" {
		beside := filepath.Join(filepath.Dir(shimExe), HelperName)
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return beside, nil
		}
	}
	p, err := exec.LookPath(HelperName)
	if err != nil {
		return "", fmt.Errorf("%s not found next to %s nor on PATH: install it with the shim", HelperName, shimExe)
	}
	return filepath.Abs(p)
}

// Run runs the helper on req and returns its result. The helper's log lines (logrus JSON on
// its stderr) are logged again by the shim, with their level and fields.
func Run(ctx context.Context, helper string, req Request) (*Result, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode the conversion request: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, helper, "convert")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	runErr := cmd.Run()
	relog(ctx, stderr.Bytes())
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("%s: %w: %s", helper, runErr, lastLine(stderr.Bytes()))
		}
		return nil, fmt.Errorf("%s: decode its answer: %w", helper, err)
	}
	if res.Error != "" {
		return nil, errors.New(res.Error)
	}
	if runErr != nil {
		return nil, fmt.Errorf("%s: %w", helper, runErr)
	}
	return &res, nil
}

// relog logs the helper's log lines through the shim's logger.
func relog(ctx context.Context, data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var fields map[string]any
		if json.Unmarshal(line, &fields) != nil {
			log.G(ctx).WithField("helper", HelperName).Warn(string(line))
			continue
		}
		msg, _ := fields["msg"].(string)
		level, err := logrus.ParseLevel(fmt.Sprint(fields["level"]))
		if err != nil {
			level = logrus.WarnLevel
		}
		delete(fields, "msg")
		delete(fields, "level")
		delete(fields, "time")
		log.G(ctx).WithFields(fields).Log(level, msg)
	}
}

func lastLine(data []byte) string {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return lines[len(lines)-1]
}

// What rune reads from its environment for its manifest flags (cmd/rune: --manifest-trust,
// --manifest-allow-ephemeral). The shim runs rune through go-runc, which passes rune the
// shim's own environment and no per-command arguments of ours, so this is the way to tell it.
const (
	EnvManifestTrust          = "RUNE_MANIFEST_TRUST"
	EnvManifestAllowEphemeral = "RUNE_MANIFEST_ALLOW_EPHEMERAL"
)

var (
	// runeEnvMu is held from a conversion until its `rune create` returned, so that two
	// containers of one shim (a pod) created under different configurations never see each
	// other's values.
	runeEnvMu sync.Mutex
	// runeEnvInherited is what the shim inherited from containerd (an administrator may set
	// the variables there); it is restored after every create.
	runeEnvInherited = sync.OnceValue(func() map[string]*string {
		m := map[string]*string{}
		for _, k := range []string{EnvManifestTrust, EnvManifestAllowEphemeral} {
			if v, ok := os.LookupEnv(k); ok {
				m[k] = &v
			} else {
				m[k] = nil
			}
		}
		return m
	})
)

// HoldRuneEnvironment sets the variables rune reads to what cfg asks for — rune.manifest_trust
// as the trust file; signing.ephemeral as the allowance for ephemeral keys — and returns the
// function that restores them and lets the next conversion in. Call it before the helper
// runs and release after `rune create` returned.
func HoldRuneEnvironment(cfg *config.Config) func() {
	inherited := runeEnvInherited()
	runeEnvMu.Lock()
	restore := func(k string) {
		if v := inherited[k]; v != nil {
			os.Setenv(k, *v)
		} else {
			os.Unsetenv(k)
		}
	}
	if cfg.Rune.ManifestTrust != "" {
		os.Setenv(EnvManifestTrust, cfg.Rune.ManifestTrust)
	} else {
		restore(EnvManifestTrust)
	}
	if cfg.Signing.Ephemeral {
		os.Setenv(EnvManifestAllowEphemeral, "true")
	} else {
		restore(EnvManifestAllowEphemeral)
	}
	return sync.OnceFunc(func() {
		restore(EnvManifestTrust)
		restore(EnvManifestAllowEphemeral)
		runeEnvMu.Unlock()
	})
}
