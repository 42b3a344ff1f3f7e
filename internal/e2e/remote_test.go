package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tenantProxy stands in front of a single-tenant Prometheus like a
// multi-tenant engine's gateway: it records the tenant header of every
// remote write and read, and any request whose content is not the
// tenant's own.
type tenantProxy struct {
	mu         sync.Mutex
	writes     map[string]int // tenant -> series received
	reads      map[string]int
	violations []string
}

func (p *tenantProxy) handler(t *testing.T, target string) http.Handler {
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant := r.Header.Get("X-Scope-OrgID")
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		raw, err := snappy.Decode(nil, body)
		p.mu.Lock()
		defer func() { p.mu.Unlock(); rp.ServeHTTP(w, r) }()
		if err != nil || tenant == "" {
			p.violations = append(p.violations, fmt.Sprintf("%s without tenant or snappy body", r.URL.Path))
			return
		}
		switch r.URL.Path {
		case "/api/v1/write":
			var wr prompb.WriteRequest
			if err := wr.Unmarshal(raw); err != nil {
				p.violations = append(p.violations, "undecodable write")
				return
			}
			for _, ts := range wr.Timeseries {
				for _, l := range ts.Labels {
					if l.Name == "agency" && l.Value != tenant {
						p.violations = append(p.violations, fmt.Sprintf("series of %s sent as tenant %s", l.Value, tenant))
					}
				}
			}
			p.writes[tenant] += len(wr.Timeseries)
		case "/api/v1/read":
			var rr prompb.ReadRequest
			if err := rr.Unmarshal(raw); err != nil {
				p.violations = append(p.violations, "undecodable read")
				return
			}
			for _, q := range rr.Queries {
				scoped := false
				for _, m := range q.Matchers {
					if m.Name == "agency" && m.Type == prompb.LabelMatcher_EQ && m.Value == tenant {
						scoped = true
					}
				}
				if !scoped {
					p.violations = append(p.violations, fmt.Sprintf("read as %s without agency=%q matcher", tenant, tenant))
				}
			}
			p.reads[tenant]++
		}
	})
}

// promQuery asks the receiving Prometheus directly.
func promQuery(t T, addr, q string) []sample {
	helper(t)
	resp, err := http.Get("http://" + addr + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var pr struct {
		Data struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&pr))
	return pr.Data.Result
}

// TestRemoteWriteExportAndRemoteRead: with the catalogue's remote_write
// entry every agency's samples reach a real Prometheus (its remote-write receiver)
// through Prometheus's queue manager, each request carrying its agency as
// X-Scope-OrgID; with --store.remote-read-url, data older than the local
// TSDB is read back from it, each agency still seeing only its own.
func TestRemoteWriteExportAndRemoteRead(t *testing.T) {
	t.Parallel()
	peer(t, "prometheus")
	dir := t.TempDir()
	promAddr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), "global: {}\n")
	startPeer(t, "prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr, "--web.enable-remote-write-receiver")
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 200*time.Millisecond)

	// Older data of both agencies is already in the engine.
	old := time.Now().Add(-3 * time.Hour)
	body := rwBody(t, ts(old, 1, "__name__", "e2e_old", "agency", "alpha"), ts(old, 2, "__name__", "e2e_old", "agency", "beta"))
	r := post(t, "http://"+promAddr+"/api/v1/write", "", "application/x-protobuf", "snappy", body)
	require.Equal(t, 204, r.code, r.body)

	proxy := &tenantProxy{writes: map[string]int{}, reads: map[string]int{}}
	ps := httptest.NewServer(proxy.handler(t, "http://"+promAddr))
	defer ps.Close()

	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue()+"remote_write:\n  - {url: \""+ps.URL+"/api/v1/write\", tenant_header: X-Scope-OrgID}\n")
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--remote-write.batch-send-deadline", "500ms",
		"--store.remote-read-url", ps.URL+"/api/v1/read")
	now := time.Now()
	require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(now, 10, "__name__", "e2e_exported", "host", "a")).code)
	require.Equal(t, 204, pushRW(t, addr, betaToken, ts(now, 20, "__name__", "e2e_exported", "host", "b")).code)

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, promQuery(c, promAddr, `e2e_exported`), 2)
	}, 60*time.Second, 500*time.Millisecond, "the samples reach the engine")
	for _, s := range promQuery(t, promAddr, `e2e_exported`) {
		want := map[string]string{"alpha": "10", "beta": "20"}[s.Metric["agency"]]
		require.Equal(t, want, s.Value[1], "%v", s.Metric)
	}

	// Remote read: old data comes back from the engine, per agency.
	at := strconv.FormatInt(old.Add(time.Second).Unix(), 10)
	readOld := func(token string) []sample {
		code, pr := api(t, addr, token, "/query", url.Values{"query": {"e2e_old"}, "time": {at}})
		require.Equal(t, 200, code, "%+v", pr)
		var data struct {
			Result []sample `json:"result"`
		}
		require.NoError(t, json.Unmarshal(pr.Data, &data))
		return data.Result
	}
	a := readOld(alphaToken)
	proxy.mu.Lock()
	t.Logf("proxy: writes %v reads %v violations %v", proxy.writes, proxy.reads, proxy.violations)
	proxy.mu.Unlock()
	require.Len(t, a, 1, "alpha reads its old data from the engine")
	require.Equal(t, "alpha", a[0].Metric["agency"])
	b := readOld(betaToken)
	require.Len(t, b, 1)
	require.Equal(t, "beta", b[0].Metric["agency"], "beta sees only its own")
	require.Len(t, readOld(opsToken), 2, "ops sees both")
	require.Empty(t, readOld("small-token"), "an agency with nothing there gets nothing, not another's")

	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	require.Empty(t, proxy.violations)
	require.Positive(t, proxy.writes["alpha"])
	require.Positive(t, proxy.writes["beta"])
	require.Positive(t, proxy.reads["alpha"])
	require.Positive(t, proxy.reads["beta"])
}
