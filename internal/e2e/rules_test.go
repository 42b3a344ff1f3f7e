package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// switchable is a target whose health the test flips.
type switchable struct {
	down atomic.Bool
	srv  *httptest.Server
}

func newSwitchable(t *testing.T) *switchable {
	s := &switchable{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func rulesCatalogue(alphaProbe, betaProbe, forDur string) string {
	return fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
defaults: {scrape_interval: 1s, evaluation_interval: 1s}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services:
      - id: web
        name: Alpha web
        tier: high
        sla: {availability: 99.5, for: %s}
        probes: [{http: %q, interval: 1s, timeout: 500ms}]
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
    services:
      - id: api
        name: Beta API
        tier: low
        sla: {availability: 99.0}
        probes: [{http: %q, interval: 1s, timeout: 500ms}]
`, catalogue.HashToken(opsToken), catalogue.HashToken(alphaToken), forDur, alphaProbe, catalogue.HashToken(betaToken), betaProbe)
}

// externalNATS runs a NATS server with JetStream in the test process, for
// tests that watch the bus themselves.
func externalNATS(t *testing.T) (*server.Server, string) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	require.NoError(t, err)
	s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(s.Shutdown)
	return s, s.ClientURL()
}

type alertMsg struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
}

// TestAlertReachesBus: a probed service goes down and its ServiceDown alert
// reaches agency.alpha.alerts within probe interval + evaluation interval +
// for + a few seconds; when it recovers, the resolved alert follows. The
// rules and alerts APIs show each agency only its own.
func TestAlertReachesBus(t *testing.T) {
	t.Parallel()
	target := newSwitchable(t)
	_, natsURL := externalNATS(t)
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	var mu sync.Mutex
	var got []alertMsg
	var gotAt []time.Time
	sub, err := nc.Subscribe("agency.*.alerts", func(m *nats.Msg) {
		require.Equal(t, "agency.alpha.alerts", m.Subject, "only alpha's service fails")
		var as []alertMsg
		require.NoError(t, json.Unmarshal(m.Data, &as))
		mu.Lock()
		defer mu.Unlock()
		for _, a := range as {
			got = append(got, a)
			gotAt = append(gotAt, time.Now())
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()

	healthy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer healthy.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, rulesCatalogue(target.srv.URL+"/", healthy.URL+"/", "2s"))
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--nats.url", natsURL)

	// Let a few healthy probes land, then fail.
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, alphaToken, `probe_success == 1`), 1) }, 30*time.Second, 200*time.Millisecond)
	downAt := time.Now()
	target.down.Store(true)
	var firing alertMsg
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i, a := range got {
			if a.Labels["alertname"] == "ServiceDown" && a.EndsAt.After(time.Now()) {
				firing = a
				t.Logf("ServiceDown reached the bus %s after the service went down", gotAt[i].Sub(downAt))
				return true
			}
		}
		return false
	}, 1*time.Second+1*time.Second+2*time.Second+6*time.Second, 100*time.Millisecond)
	require.Equal(t, "alpha", firing.Labels["agency"])
	require.Equal(t, "web", firing.Labels["service"])
	require.Equal(t, "critical", firing.Labels["severity"])
	require.Equal(t, "high", firing.Labels["tier"])
	require.Equal(t, "Alpha web (Alpha) is down", firing.Annotations["summary"])
	require.Contains(t, firing.Annotations["runbook_url"], "/runbooks#servicedown")
	require.Contains(t, firing.Annotations["dashboard"], "/agency/alpha#web")

	// The alerts API: alpha sees its firing alert, beta sees nothing of it.
	_, pr := api(t, addr, alphaToken, "/alerts", nil)
	require.Contains(t, string(pr.Data), `"alertname":"ServiceDown"`)
	_, pr = api(t, addr, betaToken, "/alerts", nil)
	require.NotContains(t, string(pr.Data), "alpha")
	_, pr = api(t, addr, betaToken, "/rules", nil)
	require.NotContains(t, string(pr.Data), "alpha")
	require.Contains(t, string(pr.Data), `"name":"sla-slots"`)
	_, pr = api(t, addr, opsToken, "/rules", nil)
	require.Contains(t, string(pr.Data), `"agency":"alpha"`)
	require.Contains(t, string(pr.Data), `"agency":"beta"`)

	// SLA figures are queryable per service.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `sla:availability:ratio_rate5m{service="web"} < 1`), 1)
	}, 30*time.Second, 200*time.Millisecond)

	// Recovery: the resolved alert follows.
	target.down.Store(false)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range got {
			if a.Labels["alertname"] == "ServiceDown" && !a.EndsAt.After(time.Now()) && a.EndsAt.After(downAt) {
				return true
			}
		}
		return false
	}, 15*time.Second, 100*time.Millisecond)
}

// TestPendingAlertSurvivesRestart: an alert pending when the process is
// killed keeps the time it already waited (ALERTS_FOR_STATE), so it fires
// about `for` after the outage began, delayed by no more than the restart.
func TestPendingAlertSurvivesRestart(t *testing.T) {
	t.Parallel()
	target := newSwitchable(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, rulesCatalogue(target.srv.URL+"/", target.srv.URL+"/", "20s"))
	data := filepath.Join(dir, "data")
	addr := freeAddr(t)
	p := start(t, addr, "run", "--config", cfg, "--data-dir", data)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, alphaToken, `probe_success == 1`), 1) }, 30*time.Second, 200*time.Millisecond)
	target.down.Store(true)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `ALERTS{alertname="ServiceDown",alertstate="pending"}`), 1)
	}, 15*time.Second, 100*time.Millisecond)
	pendingSince := time.Now()
	time.Sleep(8 * time.Second)
	p.Kill()
	killedAt := time.Now()
	addr = freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", data)
	restart := time.Since(killedAt)
	var firedAfter time.Duration
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		if assert.Len(c, query(c, addr, alphaToken, `ALERTS{alertname="ServiceDown",alertstate="firing"}`), 1) {
			firedAfter = time.Since(pendingSince)
		}
	}, 40*time.Second, 200*time.Millisecond)
	t.Logf("pending→firing took %s across a restart of %s (for: 20s)", firedAfter, restart)
	// Without restoring, the alert would wait 8s + restart + a full 20s.
	require.Less(t, firedAfter, 20*time.Second+restart+4*time.Second)
}

// TestRulesExportPassesPromtool: the demo catalogue's generated rules, as
// `samdrift rules export` writes them, pass the real promtool.
func TestRulesExportPassesPromtool(t *testing.T) {
	t.Parallel()
	pt := peer(t, "promtool")
	dir := t.TempDir()
	out, err := execCommand(binary, "rules", "export", "--config", "../../deploy/demo.yaml", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	require.NoError(t, err)
	require.Len(t, files, 7, "one file per demo agency")
	out, err = execCommand(pt, append([]string{"check", "rules"}, files...)...).CombinedOutput()
	require.NoError(t, err, string(out))
}
