package pal_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal"
)

// traceCall is one line of the reference PAL's trace: the call and its
// key=value arguments (strings unquoted, lists as []string).
type traceCall struct {
	name string
	args map[string]any
	raw  string
}

func readTrace(t *testing.T, path string) []traceCall {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read PAL trace: %v", err)
	}
	var calls []traceCall
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		c, err := parseTraceLine(line)
		if err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		calls = append(calls, c)
	}
	return calls
}

func parseTraceLine(line string) (traceCall, error) {
	c := traceCall{raw: line, args: map[string]any{}}
	name, rest, _ := strings.Cut(line, " ")
	c.name = name
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			return c, fmt.Errorf("no '=' in %q", rest)
		}
		var val any
		var err error
		switch {
		case strings.HasPrefix(after, `"`):
			var s string
			s, after, err = scanQuoted(after)
			val = s
		case strings.HasPrefix(after, "["):
			var list []string
			after = after[1:]
			for !strings.HasPrefix(after, "]") {
				after = strings.TrimPrefix(after, " ")
				var s string
				if s, after, err = scanQuoted(after); err != nil {
					break
				}
				list = append(list, s)
			}
			after = strings.TrimPrefix(after, "]")
			val = list
		default:
			var tok string
			tok, after, _ = strings.Cut(after, " ")
			val = tok
			after = " " + after
		}
		if err != nil {
			return c, err
		}
		c.args[key] = val
		rest = strings.TrimPrefix(after, " ")
	}
	return c, nil
}

// scanQuoted reads one "..." string (the PAL quotes so strconv.Unquote can
// decode it) from the front of s.
func scanQuoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", s, fmt.Errorf("expected a quoted string at %q", s)
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, s[i+1:], err
		}
	}
	return "", s, fmt.Errorf("unterminated string %q", s)
}

func callNames(calls []traceCall) []string {
	names := make([]string, len(calls))
	for i, c := range calls {
		names[i] = c.name
	}
	return names
}

// run is one program's outcome.
type run struct {
	proc           enclave.Proc
	code           int
	err            error
	stdout, stderr []byte
}

// spawn starts p with fresh pipes for its stdio (stdin carries input) and
// closes the test's copies of the child ends at once, as the runelet may.
func spawn(t *testing.T, rt enclave.Runtime, p enclave.Process, input string) (enclave.Proc, func() run) {
	t.Helper()
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	p.Stdin, p.Stdout, p.Stderr = inR, outW, errW
	proc, err := rt.Spawn(context.Background(), p)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		t.Fatalf("Spawn %q: %v", p.Args, err)
	}
	go func() {
		io.WriteString(inW, input)
		inW.Close()
	}()
	outc, errc := readAll(outR), readAll(errR)
	return proc, func() run {
		code, err := proc.Wait()
		return run{proc: proc, code: code, err: err, stdout: <-outc, stderr: <-errc}
	}
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

func readAll(r *os.File) <-chan []byte {
	c := make(chan []byte, 1)
	go func() {
		defer r.Close()
		b, _ := io.ReadAll(r)
		c <- b
	}()
	return c
}

// showargsOutput splits what testdata/showargs printed.
func showargsOutput(t *testing.T, out []byte) (argv, env []string, stdin string) {
	t.Helper()
	items := bytes.Split(out, []byte{0})
	if len(items) == 0 || string(items[0]) != "ARGV" {
		t.Fatalf("showargs output %q does not start with ARGV", out)
	}
	i := 1
	for ; i < len(items) && string(items[i]) != "ENV"; i++ {
		argv = append(argv, string(items[i]))
	}
	for i++; i < len(items) && string(items[i]) != "STDIN"; i++ {
		env = append(env, string(items[i]))
	}
	if i+1 >= len(items) {
		t.Fatalf("showargs output %q has no STDIN section", out)
	}
	return argv, env, string(items[i+1])
}

func mustInit(t *testing.T, lib *pal.Library, args ...string) {
	t.Helper()
	if err := lib.Init(context.Background(), enclave.Config{Args: args, LogLevel: "debug"}); err != nil {
		t.Fatalf("Init: %v", err)
	}
}

// spawnSleeper starts a program that says "started" and then sleeps, and
// returns once it has said so: it is then surely running (past pal_exec's
// start), whatever the PAL version.
func spawnSleeper(t *testing.T, rt enclave.Runtime) (enclave.Proc, func() (int, error)) {
	t.Helper()
	outR, outW := pipe(t)
	proc, err := rt.Spawn(context.Background(), enclave.Process{
		Path:   "/bin/sh",
		Args:   []string{"sh", "-c", "echo started; exec sleep 1000"},
		Stdout: outW,
	})
	outW.Close()
	if err != nil {
		outR.Close()
		t.Fatalf("Spawn sleeper: %v", err)
	}
	line, err := bufio.NewReader(outR).ReadString('\n')
	outR.Close()
	if line != "started\n" {
		t.Fatalf("sleeper said %q, %v", line, err)
	}
	return proc, proc.Wait
}
