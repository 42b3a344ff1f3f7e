package e2e

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/internal/apptest"
)

// startPromEngine starts Debian's Prometheus as a remote-write receiver, the
// simplest scale-out "engine" (no tenancy of its own), on addr; it returns
// the process, to stop and start again.
func startPromEngine(t *testing.T, dir, addr string) *apptest.Process {
	t.Helper()
	bin := peer(t, "prometheus")
	writeFile(t, filepath.Join(dir, "prometheus.yml"), "global: {}\n")
	p, err := apptest.StartProcess(context.Background(), "prometheus", bin, apptest.Options{Ready: "http://" + addr + "/-/ready"},
		"--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	if p != nil {
		t.Cleanup(func() {
			p.Kill()
			if t.Failed() {
				t.Logf("prometheus logs:\n%s", p.Logs.String())
			}
		})
	}
	require.NoError(t, err)
	return p
}

// TestEngineBackedRun: with --engine.url Samdrift reads every agency's
// series from the engine (fed by its own export from the bus) and keeps no
// replica: pushes and rule outputs reach the engine, the scoped query API
// answers each agency its own from there, and a query naming another
// agency finds nothing even though the engine (Prometheus, no tenancy)
// holds both — the agency matcher goes with every read.
func TestEngineBackedRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	engine := freeAddr(t)
	prom := startPromEngine(t, dir, engine)
	rules := filepath.Join(dir, "alpha-rules.yml")
	writeFile(t, rules, "groups:\n  - name: alpha\n    interval: 1s\n    rules:\n      - record: alpha:engine_pushed:sum\n        expr: sum(engine_pushed)\n")
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, strings.Replace(pushCatalogue(), "  - id: alpha\n    name: Alpha\n    phase: run\n",
		"  - id: alpha\n    name: Alpha\n    phase: run\n    rule_files: ["+rules+"]\n", 1))
	addr := freeAddr(t)
	data := filepath.Join(dir, "data")
	start(t, addr, "run", "--config", cfg, "--data-dir", data,
		"--engine.url", "http://"+engine, "--engine.tenant-header", "-",
		"--remote-write.url", "http://"+engine+"/api/v1/write", "--remote.tenant-header", "-")

	now := time.Now()
	require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(now, 10, "__name__", "engine_pushed", "host", "a")).code)
	require.Equal(t, 204, pushRW(t, addr, betaToken, ts(now, 20, "__name__", "engine_pushed", "host", "b")).code)

	// Both reach the engine, each with its agency label.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, promQuery(c, engine, `engine_pushed`), 2)
	}, 60*time.Second, 250*time.Millisecond, "the export feeds the engine")
	// Read back through Samdrift's scoped API: each agency its own.
	for token, want := range map[string]string{alphaToken: "10", betaToken: "20"} {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			got := query(c, addr, token, `engine_pushed`)
			if assert.Len(c, got, 1) {
				assert.Equal(c, want, got[0].Value[1])
			}
		}, 30*time.Second, 250*time.Millisecond)
	}
	require.Empty(t, query(t, addr, alphaToken, `engine_pushed{agency="beta"}`), "another agency's series, though the engine has them")
	require.Empty(t, query(t, addr, alphaToken, `{host="b"}`))
	require.Len(t, query(t, addr, opsToken, `engine_pushed`), 2, "ops read every agency from the engine")

	// Alpha's rule reads the engine, and its output reaches the engine and
	// comes back.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := query(c, addr, alphaToken, `alpha:engine_pushed:sum`)
		if assert.Len(c, got, 1) {
			assert.Equal(c, "10", got[0].Value[1])
		}
		assert.Len(c, promQuery(c, engine, `alpha:engine_pushed:sum{agency="alpha"}`), 1)
	}, 60*time.Second, 250*time.Millisecond, "a rule output through the engine")

	// No replica: nothing was appended to a local TSDB; the samples went
	// to the engine through the export.
	m, err := client(addr, opsToken).Metrics()
	require.NoError(t, err)
	require.Zero(t, apptest.MetricSum(m, "samdrift_store_appended_samples_total"), "no sample appended locally")
	require.GreaterOrEqual(t, apptest.MetricSum(m, "samdrift_export_samples_total"), 2.0)

	// The engine goes down: queries fail clearly (never an empty
	// success), intake and incidents go on, and the export's backlog is
	// on the bus, measured; when the engine is back it drains in order.
	require.NoError(t, prom.Stop(30*time.Second))
	code, pr := api(t, addr, alphaToken, "/query", url.Values{"query": {"engine_pushed"}})
	require.Equal(t, http.StatusInternalServerError, code, "a read the engine cannot answer is the storage's error, not the query's: %s", pr.Error)
	require.Equal(t, "error", pr.Status)
	require.Contains(t, pr.Error, "engine")
	t.Logf("with the engine down a query answers %d: %s", code, pr.Error)
	const during = 20
	for i := range during {
		require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(now.Add(time.Duration(i+1)*10*time.Millisecond), float64(100+i), "__name__", "engine_pushed", "host", "a")).code,
			"intake goes on with the engine down")
	}
	require.Equal(t, 200, postAlerts(t, addr, alphaToken, webhook("firing", now, map[string]string{"alertname": "EngineDown", "service": "web", "severity": "critical"})).code)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, incs := incidents(c, addr, alphaToken, "")
		assert.Len(c, incs, 1, "incidents go on with the engine down")
	}, 30*time.Second, 250*time.Millisecond)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		m, err := client(addr, opsToken).Metrics()
		require.NoError(c, err)
		assert.Positive(c, apptest.MetricSum(m, `samdrift_export_backlog_messages{agency="alpha"}`), "the backlog is measured")
		assert.Positive(c, apptest.MetricSum(m, `samdrift_export_lag_seconds{agency="alpha"}`))
	}, 30*time.Second, 250*time.Millisecond)

	startPromEngine(t, dir, engine)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := query(c, addr, alphaToken, `count_over_time(engine_pushed[1h])`)
		if assert.Len(c, got, 1) {
			assert.Equal(c, strconv.Itoa(1+during), got[0].Value[1], "the backlog drained into the engine")
		}
		m, err := client(addr, opsToken).Metrics()
		require.NoError(c, err)
		assert.Zero(c, apptest.MetricSum(m, `samdrift_export_backlog_messages{agency="alpha"}`))
	}, 90*time.Second, 500*time.Millisecond)
}
