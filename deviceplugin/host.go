package deviceplugin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// SysfsNodeDir holds one directory per NUMA node; on Linux ≥ 5.17 each has
// x86/sgx_total_bytes, the SGX memory (EPC) of that node in bytes. Like the TEE's device nodes
// (tee.SGXEnclaveDevices and the others, and tee.TSMReportDir and
// tee.AESMSocketDir), it is an absolute path on the node: the plugin looks at it under
// Config.HostRoot, and hands such paths to the kubelet as they are.
const SysfsNodeDir = "/sys/devices/system/node"

// hostFS looks at the node's files under a root directory (the host's / mounted into the
// plugin's container, or a test tree). Symbolic links resolve inside the root, as they would
// on the node, never into the plugin's own file system.
type hostFS struct {
	root string
}

// resolve returns the node path that path names once its symbolic links are followed, and
// whether it exists.
func (h hostFS) resolve(path string) (string, os.FileInfo, bool) {
	full, err := securejoin.SecureJoin(h.root, path)
	if err != nil {
		return "", nil, false
	}
	fi, err := os.Stat(full)
	if err != nil {
		return "", nil, false
	}
	rel, err := filepath.Rel(h.root, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", nil, false
	}
	return "/" + filepath.ToSlash(rel), fi, true
}

// devicePaths returns, for each name in candidates that exists on the node and is not a
// directory, the name (the path inside the container) and the node it resolves to.
func (h hostFS) devicePaths(candidates []string) []devicePath {
	var out []devicePath
	for _, name := range candidates {
		if host, fi, ok := h.resolve(name); ok && !fi.IsDir() {
			out = append(out, devicePath{container: name, host: host})
		}
	}
	return out
}

// dir returns the node path of dir when it exists and is a directory.
func (h hostFS) dir(dir string) (string, bool) {
	host, fi, ok := h.resolve(dir)
	if !ok || !fi.IsDir() {
		return "", false
	}
	return host, true
}

type devicePath struct {
	container string
	host      string
}

// epcNode is the SGX memory of one NUMA node.
type epcNode struct {
	node  int64
	bytes uint64
}

// readEPC reads the SGX memory of every NUMA node from sysfs. A node without the attribute
// has no EPC (or a kernel older than 5.17); no node with it at all is reported as
// fs.ErrNotExist so that the caller can say which file it wanted.
func (h hostFS) readEPC() ([]epcNode, error) {
	dir, err := securejoin.SecureJoin(h.root, SysfsNodeDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SysfsNodeDir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", SysfsNodeDir, err)
	}
	var nodes []epcNode
	for _, e := range entries {
		idx, ok := strings.CutPrefix(e.Name(), "node")
		if !ok {
			continue
		}
		id, err := strconv.ParseInt(idx, 10, 32)
		if err != nil || id < 0 {
			continue // not a node directory (sysfs also has e.g. "possible", "online")
		}
		file := filepath.Join(SysfsNodeDir, e.Name(), "x86", "sgx_total_bytes")
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "x86", "sgx_total_bytes"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		n, err := ParseEPCBytes(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		nodes = append(nodes, epcNode{node: id, bytes: n})
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no %s/node*/x86/sgx_total_bytes (Linux ≥ 5.17 with SGX reports the EPC size there; on older kernels give the size explicitly): %w", SysfsNodeDir, fs.ErrNotExist)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].node < nodes[j].node })
	return nodes, nil
}

// ParseEPCBytes parses the content of a sgx_total_bytes attribute: a decimal number of bytes
// and a newline.
func ParseEPCBytes(data []byte) (uint64, error) {
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("want a decimal number of bytes, got %q", truncate(string(data), 40))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("EPC size %q out of range", truncate(s, 40))
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
