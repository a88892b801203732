package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "verdict-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "verdict")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func verdict(args ...string) (string, int) {
	out, err := exec.Command(binary, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

// TestKeygenSealInspect is the tenant's flow: a key, a sealed executable that stays executable
// and opens with the key, its header.
func TestKeygenSealInspect(t *testing.T) {
	dir := t.TempDir()
	key, in, out := filepath.Join(dir, "key"), filepath.Join(dir, "app"), filepath.Join(dir, "app.sealed")
	if msg, code := verdict("keygen", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, msg)
	}
	k, _ := os.ReadFile(key)
	if fi, _ := os.Stat(key); len(k) != sealed.KeySize || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key: %d bytes, mode %v", len(k), fi.Mode())
	}
	if msg, code := verdict("keygen", key); code != 1 || !strings.Contains(msg, "never overwritten") {
		t.Fatalf("keygen over a key: %d %s", code, msg)
	}
	if k2, _ := os.ReadFile(key); !bytes.Equal(k, k2) {
		t.Fatal("the key changed")
	}
	plain := []byte("#!/bin/sh\necho the tenant's code\n")
	os.WriteFile(in, plain, 0o755)
	if msg, code := verdict("seal", "--key-id", "tenant/key/app", "--key", key, in, out); code != 0 {
		t.Fatalf("seal: %d %s", code, msg)
	}
	data, _ := os.ReadFile(out)
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o755 || bytes.Contains(data, plain) {
		t.Fatalf("sealed file: mode %v, or it holds the plaintext", fi.Mode())
	}
	got, err := sealed.Unseal(data, func(id string) ([]byte, error) { return k, nil })
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("unseal: %v", err)
	}
	msg, code := verdict("inspect", out)
	var h sealed.Header
	if code != 0 || json.Unmarshal([]byte(msg), &h) != nil || h.KeyID != "tenant/key/app" || h.PlaintextSize != int64(len(plain)) {
		t.Fatalf("inspect: %d %s", code, msg)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	key, short, in := filepath.Join(dir, "key"), filepath.Join(dir, "short"), filepath.Join(dir, "in")
	verdict("keygen", key)
	os.WriteFile(short, make([]byte, 16), 0o600)
	os.WriteFile(in, []byte("code"), 0o644)
	sealedFile := filepath.Join(dir, "in.sealed")
	verdict("seal", "--key-id", "a/b/c", "--key", key, in, sealedFile)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"seal", "--key", key, in, filepath.Join(dir, "o1")}, 2, "--key-id"},
		{[]string{"seal", "--key-id", "a/b/c", "--key", key, in}, 2, "two arguments"},
		{[]string{"seal", "--key-id", "a/b/c", "--key", short, in, filepath.Join(dir, "o2")}, 1, "16 bytes, want 32"},
		{[]string{"seal", "--key-id", "a/../c", "--key", key, in, filepath.Join(dir, "o3")}, 1, "starts with '.'"},
		{[]string{"seal", "--key-id", "a/b/c", "--key", key, sealedFile, filepath.Join(dir, "o4")}, 1, "sealed already"},
		{[]string{"seal", "--key-id", "a/b/c", "--key", key, dir, filepath.Join(dir, "o5")}, 1, "not a regular file"},
		{[]string{"inspect", in}, 1, "not a sealed file"},
	} {
		msg, code := verdict(c.args...)
		if code != c.code || !strings.Contains(msg, c.want) {
			t.Errorf("verdict %q: %d %s; want %d and %q", c.args, code, msg, c.code, c.want)
		}
	}
	for _, o := range []string{"o1", "o2", "o3", "o4", "o5"} {
		if _, err := os.Lstat(filepath.Join(dir, o)); err == nil {
			t.Errorf("a refused seal left %s behind", o)
		}
	}
}

// TestTLSIdentity: verdictd serves with the identity, and the printed pin is the one verdict pin
// and the kbs client compute.
func TestTLSIdentity(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, code := verdict("tls-identity", "--host", "127.0.0.1", "--host", "kbs.example", cert, key)
	if code != 0 || !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("tls-identity: %d %s", code, out)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if strings.TrimSpace(out) != kbs.PinOf(leaf) || leaf.VerifyHostname("kbs.example") != nil || leaf.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("pin %s, certificate names %v %v", out, leaf.DNSNames, leaf.IPAddresses)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if p, code := verdict("pin", cert); code != 0 || p != out {
		t.Fatalf("pin: %d %s, want %s", code, p, out)
	}
	if msg, code := verdict("tls-identity", "--host", "127.0.0.1", cert, filepath.Join(dir, "k2")); code != 1 || !strings.Contains(msg, "never overwritten") {
		t.Fatalf("over an identity: %d %s", code, msg)
	}
	if msg, code := verdict("tls-identity", cert+"2", key+"2"); code != 2 || !strings.Contains(msg, "--host") {
		t.Fatalf("without --host: %d %s", code, msg)
	}
	if msg, code := verdict("pin", key); code != 1 || !strings.Contains(msg, "no PEM certificate") {
		t.Fatalf("pin of a key: %d %s", code, msg)
	}
}
