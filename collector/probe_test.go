package collector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// testCA issues certificates for the TLS probe tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: notBefore, NotAfter: notAfter, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func tlsServer(t *testing.T, cert tls.Certificate, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPProbe(t *testing.T) {
	ca := newTestCA(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "status: healthy") })
	notAfter := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	valid := tlsServer(t, ca.leaf(t, time.Now().Add(-time.Hour), notAfter), ok)
	expired := tlsServer(t, ca.leaf(t, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)), ok)
	plain := httptest.NewServer(ok)
	defer plain.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }))
	defer failing.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	tlsCfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		name    string
		probe   catalogue.Probe
		success bool
		metrics map[string]float64
	}{
		{"ok", catalogue.Probe{HTTP: plain.URL}, true, map[string]float64{"probe_http_status_code": 200, "probe_http_ssl": 0}},
		{"500", catalogue.Probe{HTTP: failing.URL}, false, map[string]float64{"probe_http_status_code": 500}},
		{"500 expected", catalogue.Probe{HTTP: failing.URL, ExpectStatus: []int{500}}, true, map[string]float64{"probe_http_status_code": 500}},
		{"timeout", catalogue.Probe{HTTP: slow.URL}, false, map[string]float64{"probe_http_status_code": 0}},
		{"valid certificate", catalogue.Probe{HTTP: valid.URL}, true, map[string]float64{
			"probe_http_ssl": 1, "probe_ssl_earliest_cert_expiry": float64(notAfter.Unix()), "probe_http_status_code": 200}},
		{"expired certificate", catalogue.Probe{HTTP: expired.URL}, false, map[string]float64{"probe_http_status_code": 0}},
		{"body matches", catalogue.Probe{HTTP: plain.URL, ExpectBody: "heal+thy"}, true, map[string]float64{"probe_failed_due_to_regex": 0}},
		{"body mismatch", catalogue.Probe{HTTP: plain.URL, ExpectBody: "^ok$"}, false, map[string]float64{"probe_failed_due_to_regex": 1, "probe_http_status_code": 200}},
		{"refused", catalogue.Probe{HTTP: "http://127.0.0.1:1/"}, false, map[string]float64{"probe_http_status_code": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := Run(context.Background(), ProbeSpec{Probe: tc.probe, Timeout: 500 * time.Millisecond}, tlsCfg)
			require.Equal(t, tc.success, r.Success, "err: %v", r.Err)
			for k, v := range tc.metrics {
				require.Equal(t, v, r.Metrics[k], k)
			}
			require.Less(t, time.Since(start), 5*time.Second, "the probe's timeout must bound it")
			// A failed probe still records every sample: probe_success 0.
			names := map[string]float64{}
			for _, s := range r.Series(time.Now()) {
				for _, l := range s.Labels {
					if l.Name == "__name__" {
						names[l.Value] = s.Samples[0].Value
					}
				}
			}
			require.Contains(t, names, "probe_success")
			require.Contains(t, names, "probe_duration_seconds")
			require.Contains(t, names, "probe_http_status_code")
		})
	}
}

func TestTCPProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	r := Run(context.Background(), ProbeSpec{Probe: catalogue.Probe{TCP: l.Addr().String()}, Timeout: time.Second}, nil)
	require.True(t, r.Success, "%v", r.Err)
	r = Run(context.Background(), ProbeSpec{Probe: catalogue.Probe{TCP: "127.0.0.1:1"}, Timeout: time.Second}, nil)
	require.False(t, r.Success)
}

// dnsServer answers A queries for name with 10.0.0.7, NXDOMAIN otherwise.
func dnsServer(t *testing.T, name string) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if strings.EqualFold(q.Name.String(), name+".") && q.Type == dnsmessage.TypeA {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{10, 0, 0, 7}})
			}
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			_, _ = pc.WriteTo(msg, addr)
		}
	}()
	return pc.LocalAddr().String()
}

func TestDNSProbe(t *testing.T) {
	srv := dnsServer(t, "www.agency.example")
	r := Run(context.Background(), ProbeSpec{Probe: catalogue.Probe{DNS: srv, QueryName: "www.agency.example"}, Timeout: 2 * time.Second}, nil)
	require.True(t, r.Success, "%v", r.Err)
	require.Equal(t, 1.0, r.Metrics["probe_dns_answer_rrs"])
	r = Run(context.Background(), ProbeSpec{Probe: catalogue.Probe{DNS: srv, QueryName: "missing.agency.example"}, Timeout: 2 * time.Second}, nil)
	require.False(t, r.Success)
}

// TestProberPublishes: the prober publishes results on the probe source of
// each service, and a timed-out probe is published as probe_success 0.
func TestProberPublishes(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer up.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	cat, err := catalogue.Parse([]byte(fmt.Sprintf(`provider: {name: P}
agencies:
  - id: alpha
    name: A
    phase: run
    services:
      - {id: up, name: U, tier: low, probes: [{http: %q, interval: 300ms}]}
      - {id: hang, name: H, tier: low, probes: [{http: %q, interval: 500ms, timeout: 200ms}]}
`, up.URL, hang.URL)), "c.yaml")
	require.NoError(t, err)
	b := openBus(t)
	var mu sync.Mutex
	success := map[string][]float64{}
	sub, err := b.Subscribe("ingest.metrics.probe.>", func(m *nats.Msg) {
		var wr prompb.WriteRequest
		require.NoError(t, bus.DecodeMetrics(m.Data, &wr))
		for _, s := range wr.Timeseries {
			for _, l := range s.Labels {
				if l.Name == "__name__" && l.Value == "probe_success" {
					mu.Lock()
					success[m.Subject] = append(success[m.Subject], s.Samples[0].Value)
					mu.Unlock()
				}
			}
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	p := NewProber(ProberOptions{Bus: b})
	p.Apply(cat)
	defer p.Stop()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(success["ingest.metrics.probe.alpha.up"]) >= 2 && len(success["ingest.metrics.probe.alpha.hang"]) >= 2
	}, 10*time.Second, 50*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1.0, success["ingest.metrics.probe.alpha.up"][0])
	require.Equal(t, 0.0, success["ingest.metrics.probe.alpha.hang"][0])
}
