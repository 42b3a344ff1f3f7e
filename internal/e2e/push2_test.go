package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apptest"
)

func TestRemoteWrite2(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t)
	st := writev2.NewSymbolTable()
	now := time.Now().UnixMilli()
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "rw2_metric", "agency", "beta"), nil), Samples: []writev2.Sample{{Value: 7, Timestamp: now}}},
	}}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	require.NoError(t, err)
	r := post(t, "http://"+addr+"/api/v1/push", alphaToken, "application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", snappy.Encode(nil, raw))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `rw2_metric{exported_agency="beta"}`), 1)
	}, 10*time.Second, 100*time.Millisecond)
	require.Empty(t, query(t, addr, betaToken, `rw2_metric`))
}

// TestNATSOutage: with an external NATS server that goes away, pushes get
// 503 (so senders retry); when it returns, pushing works again and nothing
// acknowledged before is missing.
func TestNATSOutage(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	port := freePort(t)
	startNATS := func() *server.Server {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoSigs: true})
		require.NoError(t, err)
		s.Start()
		require.True(t, s.ReadyForConnections(10*time.Second))
		return s
	}
	ns := startNATS()
	defer func() { ns.Shutdown() }()
	addr := startPushNode(t, "--nats.url", fmt.Sprintf("nats://127.0.0.1:%d", port))

	before := time.Now()
	r := pushRW(t, addr, alphaToken, ts(before, 1, "__name__", "before_outage"))
	require.Equal(t, http.StatusNoContent, r.code, r.body)

	ns.Shutdown()
	ns.WaitForShutdown()
	r = pushRW(t, addr, alphaToken, ts(time.Now(), 2, "__name__", "during_outage"))
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	require.NotEmpty(t, r.retryAfter)
	resp, err := http.Get("http://" + addr + "/-/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	ns = startNATS()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, http.StatusNoContent, pushRW(c, addr, alphaToken, ts(time.Now(), 3, "__name__", "after_outage")).code)
	}, 30*time.Second, 500*time.Millisecond)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `after_outage`), 1)
		assert.Len(c, query(c, addr, alphaToken, `before_outage`), 1, "acknowledged before the outage")
	}, 30*time.Second, 200*time.Millisecond)
}

func freePort(t *testing.T) int {
	_, p, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// pki writes a CA, a server certificate for 127.0.0.1 and client
// certificates to dir.
type pki struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
}

func newPKI(t *testing.T, dir string) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "samdrift test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, _ := x509.ParseCertificate(der)
	p := &pki{caCert: cert, caKey: key, dir: dir}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// issue writes name.pem and name-key.pem and returns the pair.
func (p *pki) issue(t *testing.T, name string, subject pkix.Name, server bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	writePEM(t, filepath.Join(p.dir, name+".pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(p.dir, name+"-key.pem"), "EC PRIVATE KEY", kder)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMTLS: an agency authenticates with a client certificate instead of a
// token; its pushes and queries are its own.
func TestMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newPKI(t, dir)
	p.issue(t, "server", pkix.Name{CommonName: "127.0.0.1"}, true)
	alphaCert := p.issue(t, "alpha", pkix.Name{CommonName: "alpha-prometheus", Organization: []string{"Alpha"}}, false)
	other := newPKI(t, t.TempDir())
	rogue := other.issue(t, "rogue", pkix.Name{CommonName: "alpha-prometheus", Organization: []string{"Alpha"}}, false)

	cfg := filepath.Join(dir, "catalogue.yaml")
	cat := strings.Replace(pushCatalogue(), "    credentials: [{name: alpha-cred,",
		"    credentials: [{name: alpha-mtls, cert_subject: \"CN=alpha-prometheus,O=Alpha\"}, {name: alpha-cred,", 1)
	writeFile(t, cfg, cat)
	_, err := catalogue.Parse([]byte(cat), "c")
	require.NoError(t, err)

	addr := freeAddr(t)
	pr, err := apptest.StartProcess(context.Background(), "samdrift", binary, apptest.Options{},
		"run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--http.addr", addr,
		"--http.tls-cert-file", filepath.Join(dir, "server.pem"), "--http.tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--http.client-ca-file", filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	t.Cleanup(func() {
		pr.Kill()
		if t.Failed() {
			t.Logf("logs:\n%s", pr.Logs.String())
		}
	})

	roots := x509.NewCertPool()
	roots.AddCert(p.caCert)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	}
	base := "https://" + addr
	require.Eventually(t, func() bool {
		resp, err := client().Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 100*time.Millisecond)

	do := func(c *http.Client, method, path, token string, body []byte) (int, string) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(string(body)))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Encoding", "snappy")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, string(b[:n])
	}
	code, body := do(client(alphaCert), http.MethodPost, "/api/v1/push", "", rwBody(t, ts(time.Now(), 1, "__name__", "via_mtls")))
	require.Equal(t, http.StatusNoContent, code, body)
	require.Eventually(t, func() bool {
		_, body := do(client(alphaCert), http.MethodGet, "/prometheus/api/v1/query?query=via_mtls", "", nil)
		return strings.Contains(body, `"agency":"alpha"`)
	}, 10*time.Second, 100*time.Millisecond)
	// Without a certificate a token still works; beta's token sees nothing of alpha.
	_, body = do(client(), http.MethodGet, "/prometheus/api/v1/query?query=via_mtls", betaToken, nil)
	require.Contains(t, body, `"result":[]`)
	// The same subject from another CA is not trusted.
	code, _ = do(client(rogue), http.MethodPost, "/api/v1/push", "", rwBody(t, ts(time.Now(), 1, "__name__", "rogue")))
	require.NotEqual(t, http.StatusNoContent, code)
}

// TestTokenNew: a token made by `samdrift token new` works once its printed
// lines are in the catalogue.
func TestTokenNew(t *testing.T) {
	t.Parallel()
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	out, err := execCommand(binary, "token", "new", "--agency", "beta", "--name", "beta-new", "--audit-log", auditLog, "--who", "onboarding-team").CombinedOutput()
	require.NoError(t, err, string(out))
	var token, hash string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "token: "); ok {
			token = v
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "token_sha256: "); ok {
			hash = v
		}
	}
	require.True(t, strings.HasPrefix(token, "sd_"), string(out))
	require.Equal(t, catalogue.HashToken(token), hash)
	trail, err := os.ReadFile(auditLog)
	require.NoError(t, err)
	require.Contains(t, string(trail), `"action":"credential_created"`)
	require.Contains(t, string(trail), `"who":"onboarding-team"`)
	require.Contains(t, string(trail), `"credential":"beta-new"`)
	require.NotContains(t, string(trail), token, "the token itself is never written down")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, strings.Replace(pushCatalogue(), "    credentials: [{name: beta-cred,", "    credentials: [{name: beta-new, token_sha256: "+hash+"}, {name: beta-cred,", 1))
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	r := pushRW(t, addr, token, ts(time.Now(), 1, "__name__", "new_token_metric"))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, betaToken, `new_token_metric`), 1) }, 10*time.Second, 100*time.Millisecond)

	_, err = execCommand(binary, "token", "new").CombinedOutput()
	require.Error(t, err, "either --agency or --role is required")
}
