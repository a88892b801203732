package critest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

// Skipped are the specs never run here, each with the reason: they need what a test host
// must not use.
var Skipped = []struct{ Pattern, Reason string }{
	{`Image Manager`, "pulls and removes images from public registries (no registry access in tests)"},
	{`Image benchmark`, "pulls images from a public registry"},
	{`port mapping with host port and container port`, "host ports need the CNI portmap plugin's iptables DNAT rules"},
}

// skipRegexp is Skipped as one ginkgo -skip expression.
func skipRegexp() string {
	var parts []string
	for _, s := range Skipped {
		parts = append(parts, s.Pattern)
	}
	return strings.Join(parts, "|")
}

// Spec is the outcome of one critest spec.
type Spec struct {
	State   string // ginkgo's: passed, failed, skipped, panicked, timedout, ...
	Failure string // the failure's message, when it failed
	RunTime time.Duration
}

// Result is one critest run against one runtime handler.
type Result struct {
	Handler  string
	Specs    map[string]Spec // by full text: containers' texts and the spec's, space-joined
	Duration time.Duration
	Log      string // critest's output
}

// Count returns how many specs passed, failed (in any way) and were skipped.
func (r *Result) Count() (passed, failed, skipped int) {
	for _, s := range r.Specs {
		switch s.State {
		case "passed":
			passed++
		case "skipped", "pending":
			skipped++
		default:
			failed++
		}
	}
	return passed, failed, skipped
}

// Names are the specs' names, sorted.
func (r *Result) Names() []string {
	var names []string
	for n := range r.Specs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// report is the part of ginkgo's JSON report read here.
type report []struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeType            string
		LeafNodeText            string
		State                   string
		Failure                 struct{ Message string }
		RunTime                 time.Duration // nanoseconds
	}
}

// Run runs critest against e's containerd with handler, in e's namespaces, with TMPDIR (where
// critest makes pod log directories, volumes and seccomp profiles) below e.Dir. The specs run in
// one fixed order (seed 1), so runs of different handlers meet the same sequence.
// Extra arguments go to critest as they are (for example -ginkgo.focus while debugging).
func Run(ctx context.Context, e *cri.Env, critest, handler string, timeout time.Duration, extra ...string) (*Result, error) {
	dir := filepath.Join(e.Dir, "critest-"+handler)
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("critest dir: %w", err)
	}
	reportPath := filepath.Join(dir, "report.json")
	logPath := filepath.Join(dir, "critest.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("critest log: %w", err)
	}
	defer logFile.Close()
	endpoint := "unix://" + e.Sock
	argv := e.Enter(critest,
		"-runtime-endpoint", endpoint, "-image-endpoint", endpoint,
		"-config", filepath.Join(e.Dir, "crictl.yaml"),
		"-runtime-handler", handler,
		"-ginkgo.seed", "1",
		"-ginkgo.skip", skipRegexp(),
		"-ginkgo.json-report", reportPath,
		"-ginkgo.no-color",
		"-ginkgo.timeout", timeout.String())
	argv = append(argv, extra...)
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	runErr := cmd.Run() // failing specs make critest exit non-zero: the report says which
	res := &Result{Handler: handler, Specs: map[string]Spec{}, Duration: time.Since(start), Log: logPath}
	data, err := os.ReadFile(reportPath)
	if err != nil {
		return res, fmt.Errorf("critest (%v) wrote no report: %w; output:\n%s", runErr, err, tail(logPath, 40))
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return res, fmt.Errorf("decode critest report: %w", err)
	}
	for _, suite := range rep {
		for _, s := range suite.SpecReports {
			name := strings.Join(append(slices.Clone(s.ContainerHierarchyTexts), s.LeafNodeText), " ")
			if s.LeafNodeType != "It" {
				// A failed BeforeSuite or AfterSuite fails the whole run.
				if s.State != "passed" {
					return res, fmt.Errorf("critest %s %s: %s", s.LeafNodeType, s.State, s.Failure.Message)
				}
				continue
			}
			res.Specs[name] = Spec{State: s.State, Failure: s.Failure.Message, RunTime: s.RunTime}
		}
	}
	if len(res.Specs) == 0 {
		return res, fmt.Errorf("critest (%v) reported no specs; output:\n%s", runErr, tail(logPath, 40))
	}
	return res, nil
}

// tail is the end of a file, for error messages.
func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	l := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// idPattern is a container or sandbox ID as containerd's CRI makes them.
var idPattern = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
