package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// target serves a fixed exposition, including a series that claims to
// belong to agency beta.
func target(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE app_requests_total counter\napp_requests_total{code=\"200\"} 42\n# TYPE spoofed gauge\nspoofed{agency=\"beta\"} 7\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func testCatalogue(alphaTarget, betaTarget string) string {
	return fmt.Sprintf(`provider:
  name: Test provider
  timezone: Europe/Stockholm
roles:
  ops:
    credentials:
      - name: noc
        token_sha256: %s
defaults:
  scrape_interval: 1s
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials:
      - name: alpha-cred
        token_sha256: %s
    services:
      - id: web
        name: Web
        tier: high
        scrape:
          - targets: [%q]
      - id: down
        name: Down
        tier: low
        scrape:
          - targets: ["127.0.0.1:1"]
  - id: beta
    name: Beta
    phase: run
    credentials:
      - name: beta-cred
        token_sha256: %s
    services:
      - id: api
        name: API
        tier: medium
        scrape:
          - targets: [%q]
`, catalogue.HashToken("noc-token"), catalogue.HashToken("alpha-token"), alphaTarget, catalogue.HashToken("beta-token"), betaTarget)
}

func TestScrapeRouteStoreQuery(t *testing.T) {
	t.Parallel()
	alpha, beta := target(t), target(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, testCatalogue(strings.TrimPrefix(alpha.URL, "http://"), strings.TrimPrefix(beta.URL, "http://")))
	addr := freeAddr(t)
	data := filepath.Join(dir, "data")
	p := start(t, addr, "run", "--config", cfg, "--data-dir", data)

	// The target's up and metrics arrive under the right agency.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, "alpha-token", `up{agency="alpha",service="web"} == 1`), 1)
	}, 30*time.Second, 200*time.Millisecond)
	got := query(t, addr, "alpha-token", `app_requests_total`)
	require.Len(t, got, 1)
	require.Equal(t, "alpha", got[0].Metric["agency"])
	require.Equal(t, "web", got[0].Metric["service"])
	require.Equal(t, "42", got[0].Value[1])

	// An unreachable target yields up 0.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, "alpha-token", `up{service="down"} == 0`), 1)
	}, 30*time.Second, 200*time.Millisecond)

	// A target that writes agency="beta" lands as alpha, with exported_agency.
	spoof := query(t, addr, "alpha-token", `spoofed`)
	require.Len(t, spoof, 1)
	require.Equal(t, "alpha", spoof[0].Metric["agency"])
	require.Equal(t, "beta", spoof[0].Metric["exported_agency"])
	for _, s := range query(t, addr, "noc-token", `spoofed`) {
		if s.Metric["agency"] == "beta" {
			require.Equal(t, "api", s.Metric["service"], "only beta's own target may appear as beta")
		}
	}

	// Isolation: alpha's token sees nothing of beta, whatever it asks.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, "beta-token", `up{agency="beta"}`), 1)
	}, 30*time.Second, 200*time.Millisecond)
	for _, q := range []string{`up{agency="beta"}`, `{agency=~".+"}`, `{__name__=~".+",service="api"}`} {
		for _, s := range query(t, addr, "alpha-token", q) {
			require.Equal(t, "alpha", s.Metric["agency"], q)
		}
	}
	_, pr := api(t, addr, "alpha-token", "/label/agency/values", nil)
	require.JSONEq(t, `["alpha"]`, string(pr.Data))
	_, pr = api(t, addr, "alpha-token", "/series", map[string][]string{"match[]": {`{agency="beta"}`}})
	require.JSONEq(t, `[]`, string(pr.Data))
	_, pr = api(t, addr, "noc-token", "/label/agency/values", nil)
	require.JSONEq(t, `["alpha","beta"]`, string(pr.Data))

	// Self-monitoring counts the routed samples; it names every agency,
	// so it is the provider's alone.
	resp, err := metricsGet(addr)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	code, _ := get(t, "http://"+addr+"/metrics", "alpha-token")
	require.Equal(t, http.StatusForbidden, code, "an agency may not read /metrics")
	anon, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	anon.Body.Close()
	require.Equal(t, http.StatusUnauthorized, anon.StatusCode)

	p.Stop()
}

func TestDataSurvivesKill(t *testing.T) {
	t.Parallel()
	alpha, beta := target(t), target(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, testCatalogue(strings.TrimPrefix(alpha.URL, "http://"), strings.TrimPrefix(beta.URL, "http://")))
	addr := freeAddr(t)
	data := filepath.Join(dir, "data")
	p := start(t, addr, "run", "--config", cfg, "--data-dir", data)
	// Let a few scrapes land, then count what is queryable up to a fixed
	// instant and kill -9.
	var (
		at time.Time
		n  float64
	)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		at = time.Now()
		n = countOver(c, addr, at)
		assert.Greater(c, n, 2.0)
	}, 30*time.Second, 200*time.Millisecond)
	p.Kill()

	// Restart without targets, so every sample found was written before the kill.
	writeFile(t, cfg, testCatalogue("127.0.0.1:1", "127.0.0.1:1"))
	addr = freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", data)
	after := countOver(t, addr, at)
	require.GreaterOrEqual(t, after, n, "samples queryable before the kill must be there after it")
}

// countOver counts alpha's app_requests_total samples from the last 10 minutes
// up to and including at.
func countOver(t T, addr string, at time.Time) float64 {
	helper(t)
	code, pr := api(t, addr, "alpha-token", "/query", map[string][]string{
		"query": {`count_over_time(app_requests_total[10m])`},
		"time":  {fmt.Sprint(float64(at.UnixMilli()) / 1000)},
	})
	require.Equal(t, http.StatusOK, code)
	var data struct {
		Result []sample `json:"result"`
	}
	require.NoError(t, jsonUnmarshal(pr.Data, &data))
	if len(data.Result) == 0 {
		return 0
	}
	var v float64
	fmt.Sscan(data.Result[0].Value[1].(string), &v)
	return v
}

func TestReloadAddsAgencyWithoutRestart(t *testing.T) {
	t.Parallel()
	alpha, beta := target(t), target(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	full := testCatalogue(strings.TrimPrefix(alpha.URL, "http://"), strings.TrimPrefix(beta.URL, "http://"))
	onlyAlpha := full[:strings.Index(full, "  - id: beta")]
	writeFile(t, cfg, onlyAlpha)
	addr := freeAddr(t)
	p := start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	code, _ := api(t, addr, "beta-token", "/query", map[string][]string{"query": {"up"}})
	require.Equal(t, http.StatusUnauthorized, code)

	// An invalid file is refused and the running catalogue stays.
	writeFile(t, cfg, onlyAlpha+"  - id: Bad!\n")
	p.Signal(syscall.SIGHUP)
	require.Eventually(t, func() bool { return strings.Contains(p.Logs.String(), "catalogue reload refused") }, 10*time.Second, 100*time.Millisecond)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, "alpha-token", `up{service="web"} == 1`), 1)
	}, 30*time.Second, 200*time.Millisecond)

	// SIGHUP with the full catalogue: beta's token and data appear.
	writeFile(t, cfg, full)
	p.Signal(syscall.SIGHUP)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _ := api(c, addr, "beta-token", "/query", map[string][]string{"query": {"up"}})
		assert.True(c, code == http.StatusOK && len(query(c, addr, "beta-token", `up{agency="beta"} == 1`)) == 1)
	}, 30*time.Second, 200*time.Millisecond)

	// A change of the file alone (no signal) is picked up too: remove beta.
	writeFile(t, cfg, onlyAlpha)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _ := api(c, addr, "beta-token", "/query", map[string][]string{"query": {"up"}})
		assert.Equal(c, http.StatusUnauthorized, code)
	}, 30*time.Second, 200*time.Millisecond)
}

func TestInvalidConfigRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	writeFile(t, cfg, "provider:\n  name: P\nagencies:\n  - id: a\n    name: A\n    phase: sometimes\n")
	out, err := exec.Command(binary, "check", "config", cfg).CombinedOutput()
	require.Error(t, err)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.Equal(t, cfg+":6: agency \"a\": phase \"sometimes\" must be one of plan, build, run\n", string(out))

	out, err = exec.Command(binary, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "d"), "--http.addr", freeAddr(t)).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), cfg+":6: agency \"a\": phase \"sometimes\" must be one of plan, build, run")

	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, testCatalogue("127.0.0.1:1", "127.0.0.1:2"))
	out, err = exec.Command(binary, "check", "config", good).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "valid (2 agencies, 3 services)")
	_ = os.Remove(good)
}

// TestShutdownOrder: on SIGTERM intake refuses first, what it acknowledged
// drains into the stores, and the stores close after every component that
// writes to them; nothing acknowledged is lost (a restart on the same data
// finds every sample).
func TestShutdownOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue())
	addr := freeAddr(t)
	data := filepath.Join(dir, "data")
	p := start(t, addr, "run", "--config", cfg, "--data-dir", data)

	var acked atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := client(addr, alphaToken)
		base := time.Now().Add(-time.Minute)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r, err := c.Push(ts(base.Add(time.Duration(i)*time.Millisecond), float64(i), "__name__", "shutdown_metric"))
			if err == nil && r.Status == http.StatusNoContent {
				acked.Add(1)
			}
		}
	}()
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Greater(c, acked.Load(), int64(200)) }, 20*time.Second, 50*time.Millisecond)
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("samdrift did not stop within 60s of SIGTERM")
	}
	close(stop)
	<-done
	require.Equal(t, 0, p.ExitCode(), p.Logs.String())

	// The components stopped in the written order, the process last.
	var order []string
	for _, line := range strings.Split(p.Logs.String(), "\n") {
		if m := regexp.MustCompile(`msg="component stopped" component=(\S+)`).FindStringSubmatch(line); m != nil {
			order = append(order, m[1])
		}
	}
	rank := map[string]int{"signals": 0, "http": 1, "scraper": 2, "prober": 2, "push": 2, "router": 3, "rules": 4,
		"incident-engine": 5, "delivery-builtin": 5, "metering": 6, "catalogue-watcher": 6, "store": 7, "bus": 8}
	last := -1
	for _, c := range order {
		r, ok := rank[c]
		if !ok {
			continue
		}
		require.GreaterOrEqual(t, r, last, "%s stopped out of order: %v", c, order)
		last = r
	}
	require.Equal(t, "bus", order[len(order)-1], "the bus stops last: %v", order)
	require.Contains(t, p.Logs.String(), `msg="samdrift stopped"`)
	require.Less(t, strings.Index(p.Logs.String(), `component=bus`), strings.LastIndex(p.Logs.String(), `msg="samdrift stopped"`))

	// Nothing acknowledged was lost.
	start(t, addr, "run", "--config", cfg, "--data-dir", data)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, alphaToken, `count_over_time(shutdown_metric[1h])`)
		if assert.Len(c, v, 1) {
			assert.GreaterOrEqual(c, v[0].Float(), float64(acked.Load()))
		}
	}, 30*time.Second, 200*time.Millisecond, "every one of %d acknowledged samples", acked.Load())
	t.Logf("%d samples acknowledged up to SIGTERM, all stored; stop order %v", acked.Load(), order)
}
