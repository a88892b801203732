package carrierhelper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclavehost"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/internal/atomicfile"
	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
)

// maxSpecSize bounds config.json: containerd writes a few kilobytes.
const maxSpecSize = 16 << 20

// bundleSpec is config.json as read: the decoded spec for decisions, the bytes for the rewrite.
type bundleSpec struct {
	raw  []byte
	mode os.FileMode
	spec *specs.Spec
}

func readSpec(bundle string) (*bundleSpec, error) {
	p := filepath.Join(bundle, "config.json")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read OCI spec: %s is not a regular file", p)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	if len(raw) > maxSpecSize {
		return nil, fmt.Errorf("read OCI spec: %s is larger than %d bytes", p, maxSpecSize)
	}
	spec, err := decodeSpec(raw)
	if err != nil {
		return nil, fmt.Errorf("read OCI spec %s: %w", p, err)
	}
	return &bundleSpec{raw: raw, mode: fi.Mode().Perm(), spec: spec}, nil
}

// decodeSpec decodes config.json the way rune does (launcher.LoadSpec: encoding/json, first value).
func decodeSpec(raw []byte) (*specs.Spec, error) {
	var spec *specs.Spec
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&spec); err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, errors.New("config is null")
	}
	return spec, nil
}

// plan is what a carrier makes of a container: its enclave settings, the entrypoint the
// measurement covers and the annotations that carry the settings to rune.
type plan struct {
	settings    *enclave.Settings
	entrypoint  enclavemanifest.Entrypoint
	rootfs      string
	annotations map[string]string
}

// plan works out the enclave settings of the converted container: the container's own
// ENCLAVE_* variables and enclave.* annotations (variables first, as rune reads them), with
// the carrier's runtime and, when the container names no TEE, the carrier's default type. A
// container that names another runtime than the carrier's is refused rather than overridden.
func planFor(c Carrier, spec *specs.Spec, bundle string) (*plan, error) {
	if spec.Process == nil {
		return nil, errors.New("the OCI spec has no process")
	}
	// A copy: FromSpec edits the environment it reads.
	cp := *spec
	proc := *spec.Process
	cp.Process = &proc
	proc.Env = slices.DeleteFunc(slices.Clone(spec.Process.Env), carrierclient.IsCarrierEnv)
	cp.Annotations = maps.Clone(spec.Annotations)
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	if _, ok := setting(&cp, enclave.EnvType, enclave.AnnotationType); !ok {
		cp.Annotations[enclave.AnnotationType] = string(c.DefaultType)
	}
	if rt, ok := setting(&cp, enclave.EnvPath, enclave.AnnotationPath); !ok {
		cp.Annotations[enclave.AnnotationPath] = c.RuntimePath
	} else if rt != c.RuntimePath {
		return nil, fmt.Errorf("the container sets the enclave runtime %q, but this carrier runs %s (drop %s or %s, or choose another carrier)",
			rt, c.RuntimePath, enclave.EnvPath, enclave.AnnotationPath)
	}
	s, err := enclave.FromSpec(&cp)
	if err != nil {
		return nil, fmt.Errorf("enclave settings: %w", err)
	}
	if s == nil {
		return nil, errors.New("enclave settings: none after conversion")
	}
	rootfs, err := rootfsOf(bundle, spec)
	if err != nil {
		return nil, err
	}
	if len(proc.Args) == 0 {
		return nil, errors.New("process.args must not be empty")
	}
	path, err := enclavehost.LookPathInRootfs(rootfs, proc.Args[0], proc.Env, proc.Cwd)
	if err != nil {
		return nil, err
	}
	anns := cp.Annotations
	anns[enclave.AnnotationType] = string(s.Type)
	anns[enclave.AnnotationPath] = s.RuntimePath
	anns[enclave.AnnotationArgs] = strings.Join(s.Args, ",")
	anns[enclave.AnnotationLogLevel] = s.LogLevel
	anns[enclave.AnnotationRAType] = s.RAType
	// The broker settings (and what they deliver) reach rune as annotations too, exactly as
	// the container gave them: the conversion removes them from the environment.
	for _, kv := range [][2]string{{enclave.EnvKBSURL, enclave.AnnotationKBSURL}, {enclave.EnvKBSPin, enclave.AnnotationKBSPin},
		{enclave.EnvKBSCA, enclave.AnnotationKBSCA}, {enclave.EnvSecrets, enclave.AnnotationSecrets}, {enclave.EnvLayers, enclave.AnnotationLayers}} {
		if v, ok := setting(spec, kv[0], kv[1]); ok {
			anns[kv[1]] = v
		}
	}
	anns[enclavemanifest.AnnotationRequired] = "true"
	anns[AnnotationCarrier] = c.Name
	return &plan{
		settings: s,
		entrypoint: enclavemanifest.Entrypoint{
			Path: path, Args: slices.Clone(proc.Args), Env: slices.Clone(proc.Env), Cwd: proc.Cwd,
		},
		rootfs:      rootfs,
		annotations: anns,
	}, nil
}

// setting is the value rune will read for one setting: the variable if present, else the annotation.
func setting(spec *specs.Spec, env, annotation string) (string, bool) {
	found, val := false, ""
	for _, kv := range spec.Process.Env {
		if v, ok := strings.CutPrefix(kv, env+"="); ok {
			found, val = true, v // the last one counts, as in enclave.FromSpec
		}
	}
	if found {
		return val, true
	}
	v, ok := spec.Annotations[annotation]
	return v, ok
}

// convert writes the manifest and the converted config.json. The new config.json is checked
// first: read back the way rune reads it, it must give exactly the settings and entrypoint
// that were measured, or nothing is written.
func (b *bundleSpec) convert(bundle string, data []byte, p *plan, carrierName string) error {
	out, err := rewriteSpec(b.raw, p.entrypoint.Env, p.annotations)
	if err != nil {
		return fmt.Errorf("rewrite config.json: %w", err)
	}
	if err := checkConverted(out, p); err != nil {
		return fmt.Errorf("rewrite config.json: %w", err)
	}
	if err := enclavemanifest.WriteToBundle(bundle, data); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(bundle, "config.json"), out, b.mode); err != nil {
		os.Remove(enclavemanifest.BundlePath(bundle))
		return fmt.Errorf("rewrite config.json: %w", err)
	}
	return nil
}

// rewriteSpec replaces process.env and annotations of a config.json and keeps every other
// member as it was, including members this build's runtime-spec does not know.
func rewriteSpec(raw []byte, env []string, annotations map[string]string) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var proc map[string]json.RawMessage
	if err := json.Unmarshal(doc["process"], &proc); err != nil || proc == nil {
		return nil, fmt.Errorf("process is not an object: %v", err)
	}
	var err error
	if proc["env"], err = marshal(env); err != nil {
		return nil, err
	}
	if doc["process"], err = marshal(proc); err != nil {
		return nil, err
	}
	if doc["annotations"], err = marshal(annotations); err != nil {
		return nil, err
	}
	return marshal(doc)
}

// marshal encodes without HTML escaping, so strings keep their bytes as the user wrote them.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkConverted reads a converted config.json as rune will and compares.
func checkConverted(out []byte, p *plan) error {
	spec, err := decodeSpec(out)
	if err != nil {
		return err
	}
	s, err := enclave.FromSpec(spec)
	if err != nil {
		return fmt.Errorf("converted settings: %w", err)
	}
	if s == nil {
		return errors.New("the converted spec has no enclave settings")
	}
	m := enclavemanifest.Manifest{Measurement: strings.Repeat("0", 64), Enclave: enclavemanifest.EnclaveFrom(p.settings), Entrypoint: p.entrypoint}
	if err := m.Matches(s, m.Measurement); err != nil {
		return fmt.Errorf("the converted spec would not match its manifest: %w", err)
	}
	if spec.Process == nil || !slices.Equal(spec.Process.Args, p.entrypoint.Args) || !slices.Equal(spec.Process.Env, p.entrypoint.Env) || spec.Process.Cwd != p.entrypoint.Cwd {
		return errors.New("the converted spec's process differs from the measured entrypoint")
	}
	if spec.Annotations[enclavemanifest.AnnotationRequired] != "true" {
		return errors.New("the converted spec does not require its manifest")
	}
	return nil
}
