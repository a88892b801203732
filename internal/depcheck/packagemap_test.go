package depcheck

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// row is one line of docs/ARCHITECTURE.md's package map: the packages it is for and what they
// may import from this module.
type row struct {
	patterns []string
	allowed  []string // nil with any: everything
	any      bool
	used     bool
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// packageMap reads the "Package map" table of docs/ARCHITECTURE.md.
func packageMap(t *testing.T) []*row {
	t.Helper()
	f, err := os.Open("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []*row
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Package map"
			continue
		case in && len(rows) > 0 && !strings.HasPrefix(line, "|"):
			// The map is the section's first table.
			in = false
			continue
		case !in || !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			t.Fatalf("package map row %q has no may-import column", line)
		}
		r := &row{}
		for _, m := range codeSpan.FindAllStringSubmatch(cells[1], -1) {
			r.patterns = append(r.patterns, m[1])
		}
		for _, m := range codeSpan.FindAllStringSubmatch(cells[2], -1) {
			if m[1] == "*" {
				r.any = true
				continue
			}
			r.allowed = append(r.allowed, m[1])
		}
		if !r.any && len(r.allowed) == 0 && strings.TrimSpace(cells[2]) != "—" {
			t.Fatalf("package map row %q: may-import is neither names, `*` nor —", line)
		}
		rows = append(rows, r)
	}
	if len(rows) < 40 {
		t.Fatalf("read %d rows of the package map", len(rows))
	}
	return rows
}

// matches reports whether pattern ("x" or "x/...") names pkg, and how specific it is.
func matches(pattern, pkg string) (bool, int) {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/"), len(base)
	}
	return pattern == pkg, len(pattern) + 1000
}

// rowFor is the most specific row naming pkg.
func rowFor(rows []*row, pkg string) *row {
	var best *row
	bestScore := -1
	for _, r := range rows {
		for _, p := range r.patterns {
			if ok, score := matches(p, pkg); ok && score > bestScore {
				best, bestScore = r, score
			}
		}
	}
	return best
}

// TestPackageMap: every package of the module (internal/testdata too, which ./... skips) has a row in docs/ARCHITECTURE.md's package map,
// imports only what its row allows, and every row and every allowed name names a package that
// exists: the map is the code's, as go list sees it.
func TestPackageMap(t *testing.T) {
	rows := packageMap(t)
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "../../...", "../../internal/testdata").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		imports[pkg] = nil
		for _, imp := range f[1:] {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				imports[pkg] = append(imports[pkg], rel)
			}
		}
	}
	exists := func(pattern string) bool {
		for pkg := range imports {
			if ok, _ := matches(pattern, pkg); ok {
				return true
			}
		}
		return false
	}
	for pkg, imps := range imports {
		r := rowFor(rows, pkg)
		if r == nil {
			t.Errorf("package %s has no row in docs/ARCHITECTURE.md's package map", pkg)
			continue
		}
		r.used = true
		if r.any {
			continue
		}
	next:
		for _, imp := range imps {
			for _, a := range r.allowed {
				if ok, _ := matches(a, imp); ok {
					continue next
				}
			}
			t.Errorf("%s imports %s, which its row in docs/ARCHITECTURE.md's package map (%s) does not allow", pkg, imp, strings.Join(r.patterns, ", "))
		}
	}
	for _, r := range rows {
		for _, p := range append(append([]string(nil), r.patterns...), r.allowed...) {
			if !exists(p) {
				t.Errorf("docs/ARCHITECTURE.md's package map names %s, which is no package of the module", p)
			}
		}
		if !r.used {
			t.Errorf("docs/ARCHITECTURE.md's package map row %s is every package's second choice: no package uses it", strings.Join(r.patterns, ", "))
		}
	}
}

// linked is `go list -deps` of a command of the module.
func linked(t *testing.T, cmd string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "../../cmd/"+cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/%s: %v\n%s", cmd, err, out)
	}
	return strings.Fields(string(out))
}

// TestRuntimeCodeOnlyInTheRunelet: rune, the shim and its carrier helper link no enclave
// runtime's code (it runs in the runelet; rune starts as quickly as runc), and the long-lived shim
// links no X.509, TLS or HTTP code (docs/ARCHITECTURE.md, "What the binaries link").
func TestRuntimeCodeOnlyInTheRunelet(t *testing.T) {
	runtime := []string{module + "runelet", module + "pal", module + "enclave/runtimes", module + "enclave/wasm", module + "enclave/native", "github.com/tetratelabs/wazero"}
	for _, cmd := range []string{"rune", "containerd-shim-rune-v2", "rune-carrier-helper"} {
		for _, pkg := range linked(t, cmd) {
			for _, f := range runtime {
				// pal is the loader itself (pal/palcrash only reads a crash report), and
				// enclave/wasm/codecache is the cache's layout, which rune mounts: no runtime code.
				prefix := f != module+"pal" && strings.HasPrefix(pkg, f+"/")
				if (pkg == f || prefix) && pkg != module+"enclave/wasm/codecache" {
					t.Errorf("cmd/%s links %s", cmd, pkg)
				}
			}
		}
	}
	for _, pkg := range linked(t, "containerd-shim-rune-v2") {
		switch pkg {
		case "crypto/x509", "crypto/tls", "net/http":
			t.Errorf("cmd/containerd-shim-rune-v2 links %s", pkg)
		}
	}
}
