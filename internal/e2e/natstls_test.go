package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNATSOverTLS: an external NATS that accepts only TLS clients with a
// certificate from the site's CA; samdrift connects with --nats.tls-*,
// and data flows. A client without a certificate is refused.
func TestNATSOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newPKI(t, dir)
	srvCert := p.issue(t, "nats-server", pkix.Name{CommonName: "nats"}, true)
	p.issue(t, "samdrift", pkix.Name{CommonName: "samdrift-node"}, false)
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)

	port := freePort(t)
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: filepath.Join(dir, "js"), NoSigs: true,
		TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(ns.Shutdown)
	require.True(t, ns.ReadyForConnections(10*time.Second))
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)

	// No client certificate: refused.
	_, err = nats.Connect(url, nats.RootCAs(filepath.Join(dir, "ca.pem")), nats.Timeout(2*time.Second))
	require.Error(t, err, "a client without a certificate is refused")
	// Plain text: refused.
	_, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.Timeout(2*time.Second))
	require.Error(t, err)

	addr := startPushNode(t, "--nats.url", url,
		"--nats.tls-ca", filepath.Join(dir, "ca.pem"),
		"--nats.tls-cert", filepath.Join(dir, "samdrift.pem"), "--nats.tls-key", filepath.Join(dir, "samdrift-key.pem"))
	r := pushRW(t, addr, alphaToken, ts(time.Now(), 1, "__name__", "over_tls"))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, alphaToken, `over_tls`), 1) }, 10*time.Second, 100*time.Millisecond)
	require.Positive(t, ns.NumClients())
	conns, err := ns.Connz(&server.ConnzOptions{})
	require.NoError(t, err)
	for _, c := range conns.Conns {
		require.NotEmpty(t, c.TLSVersion, "every client connection is TLS")
	}

	// Half a client certificate is a clear startup error.
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue())
	out, err := exec.Command(binary, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "half"), "--http.addr", freeAddr(t),
		"--nats.url", url, "--nats.tls-cert", filepath.Join(dir, "samdrift.pem")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "needs both --nats.tls-cert and --nats.tls-key")
}
