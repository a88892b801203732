package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// Kubectl runs kubectl as cluster-admin with stdin (nil for none); a non-zero exit is in the
// Result.
func (c *Cluster) Kubectl(stdin []byte, args ...string) (clients.Result, error) {
	// kubectl caches discovery under $HOME/.kube unless told otherwise.
	return clients.Run(context.Background(), clientTimeout, stdin, c.k8s("kubectl"),
		append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", filepath.Join(c.Dir, "kubectl-cache")}, args...)...)
}

// kubectlOK runs kubectl, which must exit 0, and returns its stdout.
func (c *Cluster) kubectlOK(args ...string) (string, error) {
	res, err := c.Kubectl(nil, args...)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("kubectl %s: %s", strings.Join(args, " "), res)
	}
	return res.Stdout, err
}

// Node returns the cluster's node.
func (c *Cluster) Node() (*corev1.Node, error) {
	out, err := c.kubectlOK("get", "node", NodeName, "-o", "json")
	if err != nil {
		return nil, err
	}
	var n corev1.Node
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return nil, fmt.Errorf("decode node: %w", err)
	}
	return &n, nil
}

// NodeReady reports whether the node's Ready condition is True, with the condition's message.
func NodeReady(n *corev1.Node) (bool, string) {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue, cond.Reason + ": " + cond.Message
		}
	}
	return false, "no Ready condition"
}

// WaitNodeReady waits until the node is registered and Ready.
func (c *Cluster) WaitNodeReady(timeout time.Duration) error {
	return c.waitFor(c.kubelet, timeout, "the node to be Ready", func() error {
		n, err := c.Node()
		if err != nil {
			return err
		}
		if ok, msg := NodeReady(n); !ok {
			return fmt.Errorf("node not Ready: %s", msg)
		}
		return nil
	})
}

// writeSigningKey writes the carriers' signing key and the trust file (its public key) rune
// checks converted containers' manifests against.
func (c *Cluster) writeSigningKey() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	if err := writePEM(filepath.Join(c.Dir, "signing", "key.pem"), "PRIVATE KEY", mustPKCS8(key)); err != nil {
		return err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("marshal signing public key: %w", err)
	}
	return writePEM(filepath.Join(c.Dir, "signing", "trust.pem"), "PUBLIC KEY", spki)
}

// APIClient is an HTTPS client of the API server as cluster-admin, and the server's URL, for
// callers that poll without starting a kubectl each time.
func (c *Cluster) APIClient() (*http.Client, string, error) {
	cert, err := tls.LoadX509KeyPair(c.pki.path("admin", "crt"), c.pki.path("admin", "key"))
	if err != nil {
		return nil, "", fmt.Errorf("admin certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.caCert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, fmt.Sprintf("https://127.0.0.1:%d", c.apiPort), nil
}
