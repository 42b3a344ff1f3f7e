package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/internal/apptest"
)

// startPromEngine starts Debian's Prometheus as a remote-write receiver, the
// simplest scale-out "engine" (no tenancy of its own), and returns its
// address.
func startPromEngine(t *testing.T, dir string) string {
	t.Helper()
	peer(t, "prometheus")
	addr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), "global: {}\n")
	startPeer(t, "prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond)
	return addr
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
	engine := startPromEngine(t, dir)
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
}
