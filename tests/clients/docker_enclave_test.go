package clients

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const dockerEnclaveImage = "rune-clients-enclave:latest"

// testDockerEnclave: docker run --runtime rune with the enclave settings as -e runs a WebAssembly
// workload in the builtin:wasm enclave runtime on the sim TEE, with output, exit codes, exec and kill
// as for any container.
func testDockerEnclave(t *testing.T, s *dockerSuite) {
	layer := enclaveImageTar(t, enclaveImageFiles(t))
	if res, err := s.exec(context.Background(), layer, "import", "-", dockerEnclaveImage); err != nil || res.ExitCode != 0 {
		t.Fatalf("docker import: %v %s", err, res)
	}
	enclave := []string{"-e", "ENCLAVE_TYPE=sim", "-e", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}
	run := func(t *testing.T, cmd ...string) Result {
		args := append(append(append([]string{"run", "--rm"}, runFlags()...), enclave...), dockerEnclaveImage)
		res, err := s.exec(context.Background(), nil, append(args, cmd...)...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t.Run("hello", func(t *testing.T) {
		res := run(t, "/app/hello.wasm", "7")
		if res.ExitCode != 7 || !strings.Contains(res.Stdout, "Hello from an enclave container!") || !strings.Contains(res.Stdout, `args=["/app/hello.wasm" "7"]`) {
			t.Fatalf("docker run hello.wasm 7: %s", res)
		}
	})
	t.Run("settings hidden from the workload", func(t *testing.T) {
		if res := run(t, "/app/prog.wasm", "env", "ENCLAVE_TYPE"); res.ExitCode != 0 || res.Stdout != "unset\n" {
			t.Fatalf("docker run env: %s", res)
		}
	})
	t.Run("exec, stop, kill", func(t *testing.T) {
		args := append(append(append([]string{"run", "-d", "--name", "enclave-sleeper"}, runFlags()...), enclave...), dockerEnclaveImage, "/app/prog.wasm", "sleep")
		s.mustDocker(t, args...)
		t.Cleanup(func() { s.exec(context.Background(), nil, "rm", "-f", "enclave-sleeper") })
		s.waitLogLine(t, "enclave-sleeper", "sleeping")
		res := s.docker(t, "exec", "enclave-sleeper", "/app/prog.wasm", "args", "a b", "", "ü")
		if res.ExitCode != 0 || res.Stdout != "|a b||ü|\n" {
			t.Fatalf("docker exec in the enclave: %s", res)
		}
		if res := s.docker(t, "exec", "enclave-sleeper", "/app/prog.wasm", "exit", "6"); res.ExitCode != 6 {
			t.Fatalf("docker exec exit status: %s", res)
		}
		s.mustDocker(t, "stop", "-t", "5", "enclave-sleeper")
		// SIGTERM cancels the wasm workload: 128+15.
		if code := s.wait(t, "enclave-sleeper"); code != 143 {
			t.Fatalf("exit after docker stop = %d, want 143", code)
		}
	})
}

// enclaveImageFiles are /app/hello.wasm (examples/hello) and /app/prog.wasm (the integration
// tests' enclaveprog), built for WASI.
func enclaveImageFiles(t *testing.T) map[string][]byte {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for name, pkg := range map[string]string{"app/hello.wasm": "./examples/hello", "app/prog.wasm": "./tests/integration/testdata/enclaveprog"} {
		wasm := filepath.Join(t.TempDir(), "m.wasm")
		cmd := exec.Command("go", "build", "-o", wasm, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
		if files[name], err = os.ReadFile(wasm); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// enclaveImageTar is the busybox rootfs plus files (by path without the leading /, under app/).
func enclaveImageTar(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	base, err := BusyboxRootfsTar(bb)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(base))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	tw.WriteHeader(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755})
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := writeTarFile(tw, name, files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
