package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/samdrift/samdrift/internal/apptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type incident = apptest.Incident

// incidents lists the incidents token may see (every page); not inside an
// Eventually condition (use client(...).Incidents there).
func incidents(t T, addr, token, query string) (int, []incident) {
	helper(t)
	incs, err := client(addr, token).Incidents(query)
	require.NoError(t, err)
	return http.StatusOK, incs
}

func webhook(status string, startsAt time.Time, alerts ...map[string]string) []byte {
	type wa struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	var as []wa
	for _, l := range alerts {
		a := wa{Status: status, Labels: l, Annotations: map[string]string{"summary": l["alertname"] + " fired"}, StartsAt: startsAt}
		if status == "resolved" {
			a.EndsAt = time.Now()
		}
		as = append(as, a)
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "samdrift", "groupKey": "{}:{}", "alerts": as})
	return b
}

func postAlerts(t T, addr, token string, body []byte) pushResp {
	helper(t)
	return post(t, "http://"+addr+"/api/v1/alerts", token, "application/json", "", body)
}

func TestWebhookIncidentsAndIsolation(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t)
	start := time.Now().Add(-time.Minute)
	// alpha posts its own alerts; the agency label it writes is not trusted.
	r := postAlerts(t, addr, alphaToken, webhook("firing", start,
		map[string]string{"alertname": "DiskFull", "service": "web", "severity": "warning", "instance": "a", "agency": "beta"},
		map[string]string{"alertname": "DiskFull", "service": "web", "severity": "warning", "instance": "b"}))
	require.Equal(t, http.StatusOK, r.code, r.body)
	// The provider's Alertmanager names the agency of each alert.
	r = postAlerts(t, addr, opsToken, webhook("firing", start, map[string]string{"alertname": "Backup", "agency": "beta", "service": "web", "severity": "critical"}))
	require.Equal(t, http.StatusOK, r.code, r.body)
	// small is in phase build: its incidents go to the onboarding queue.
	r = postAlerts(t, addr, "small-token", webhook("firing", start, map[string]string{"alertname": "Onb", "service": "x"}))
	require.Equal(t, http.StatusOK, r.code, r.body)

	var alpha []incident
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, alpha = incidents(c, addr, alphaToken, "")
		_, beta := incidents(c, addr, betaToken, "")
		assert.Len(c, beta, 1)
		// The incident's versions reach the store one after another: wait
		// for the one with both instances.
		if assert.Len(c, alpha, 1) {
			assert.Equal(c, 2, alpha[0].Count, "two instances, one incident")
		}
	}, 15*time.Second, 100*time.Millisecond)
	require.Equal(t, "alpha", alpha[0].Agency)
	require.Equal(t, "Medium", alpha[0].Priority) // high tier × warning
	_, beta := incidents(t, addr, betaToken, "")
	require.Equal(t, "Backup", beta[0].AlertName)
	for _, inc := range beta {
		require.NotEqual(t, "alpha", inc.Agency)
	}
	// Isolation: alpha sees nothing of beta's, even when asking for it.
	_, got := incidents(t, addr, alphaToken, "agency=beta")
	require.Empty(t, got)
	code, _ := get(t, "http://"+addr+"/api/v1/incidents/"+beta[0].ID, alphaToken)
	require.Equal(t, http.StatusNotFound, code)
	_, all := incidents(t, addr, opsToken, "")
	require.Len(t, all, 3)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, small := incidents(c, addr, opsToken, "agency=small")
		assert.True(c, len(small) == 1 && small[0].Queue == "onboarding" && small[0].Company == "Test provider")
	}, 10*time.Second, 100*time.Millisecond)

	// ops acknowledge, assign and annotate; agencies may not.
	id := alpha[0].ID
	rr := post(t, "http://"+addr+"/api/v1/incidents/"+id+"/ack", alphaToken, "application/json", "", nil)
	require.Equal(t, http.StatusForbidden, rr.code)
	for _, a := range []struct{ action, body string }{{"ack", ""}, {"assign", `{"assignee":"kari"}`}, {"notes", `{"text":"looking"}`}} {
		rr := post(t, "http://"+addr+"/api/v1/incidents/"+id+"/"+a.action, opsToken, "application/json", "", []byte(a.body))
		require.Equal(t, http.StatusOK, rr.code, rr.body)
	}
	_, alpha = incidents(t, addr, alphaToken, "")
	require.True(t, alpha[0].Acknowledged)
	require.Equal(t, "kari", alpha[0].Assignee)

	// Resolved alerts resolve the incident once both have resolved.
	r = postAlerts(t, addr, alphaToken, webhook("resolved", start, map[string]string{"alertname": "DiskFull", "service": "web", "severity": "warning", "instance": "a", "agency": "beta"}))
	require.Equal(t, http.StatusOK, r.code)
	r = postAlerts(t, addr, alphaToken, webhook("resolved", start, map[string]string{"alertname": "DiskFull", "service": "web", "severity": "warning", "instance": "b"}))
	require.Equal(t, http.StatusOK, r.code)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, got := incidents(c, addr, alphaToken, "state=resolved")
		assert.True(c, len(got) == 1 && got[0].ID == id)
	}, 10*time.Second, 100*time.Millisecond)
	// People's changes survive the engine's updates.
	_, got = incidents(t, addr, alphaToken, "")
	require.True(t, got[0].Acknowledged)
	require.Equal(t, "kari", got[0].Assignee)
}

func get(t T, url, token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhookBadInput(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t)
	now := time.Now()
	ok := webhook("firing", now, map[string]string{"alertname": "X"})
	for _, tc := range []struct {
		name, token, ctype string
		body               []byte
		code               int
		contains           string
	}{
		{"no token", "", "application/json", ok, 401, ""},
		{"wrong content type", alphaToken, "text/plain", ok, 415, "application/json"},
		{"malformed JSON", alphaToken, "application/json", []byte("{"), 400, "malformed webhook JSON"},
		{"wrong version", alphaToken, "application/json", bytes.Replace(ok, []byte(`"version":"4"`), []byte(`"version":"3"`), 1), 400, "version"},
		{"no alerts", alphaToken, "application/json", []byte(`{"version":"4","alerts":[]}`), 400, "without alerts"},
		{"no alertname", alphaToken, "application/json", webhook("firing", now, map[string]string{"job": "x"}), 400, "no alertname"},
		{"no startsAt", alphaToken, "application/json", webhook("firing", time.Time{}, map[string]string{"alertname": "X"}), 400, "no startsAt"},
		{"future", alphaToken, "application/json", webhook("firing", now.Add(time.Hour), map[string]string{"alertname": "X"}), 400, "future"},
		{"ops without agency", opsToken, "application/json", ok, 400, "agency label"},
		{"ops unknown agency", opsToken, "application/json", webhook("firing", now, map[string]string{"alertname": "X", "agency": "ghost"}), 400, `"ghost"`},
		{"plan-phase agency", "planned-token", "application/json", ok, 403, "phase plan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, "http://"+addr+"/api/v1/alerts", tc.token, tc.ctype, "", tc.body)
			require.Equal(t, tc.code, r.code, r.body)
			require.Contains(t, r.errMsg(), tc.contains)
		})
	}
	// A refused payload is never acknowledged, so it never reached the bus:
	// there is nothing to wait for.
	_, all := incidents(t, addr, opsToken, "")
	require.Empty(t, all, "nothing stored for refused payloads")
	r, err := client(addr, alphaToken).Get("/api/v1/incidents?state=sideways")
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, r.Body, `"errorType":"bad_data"`)
}

// TestRealAlertmanager: Debian's Alertmanager, its webhook receiver pointed
// at Samdrift with an ops credential, turns a firing and then resolved alert
// into one incident, opened then resolved.
func TestRealAlertmanager(t *testing.T) {
	t.Parallel()
	peer(t, "prometheus-alertmanager")
	addr := startPushNode(t)
	dir := t.TempDir()
	amAddr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "alertmanager.yml"), fmt.Sprintf(`route:
  receiver: samdrift
  group_by: [agency, service, alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: samdrift
    webhook_configs:
      - url: http://%s/api/v1/alerts
        send_resolved: true
        http_config:
          authorization:
            credentials: %s
`, addr, opsToken))
	startPeer(t, "prometheus-alertmanager", "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address=")
	amAlert := func(endsAt time.Time) []byte {
		b, _ := json.Marshal([]map[string]any{{
			"labels":      map[string]string{"alertname": "PaymentsDown", "agency": "beta", "service": "web", "severity": "critical"},
			"annotations": map[string]string{"summary": "Payments are down"},
			"startsAt":    time.Now().Add(-time.Minute), "endsAt": endsAt,
		}})
		return b
	}
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", bytes.NewReader(amAlert(time.Now().Add(time.Hour))))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond)
	var opened []incident
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, opened = incidents(c, addr, betaToken, "state=open")
		assert.Len(c, opened, 1)
	}, 30*time.Second, 200*time.Millisecond)
	require.Equal(t, "PaymentsDown", opened[0].AlertName)
	require.Equal(t, "Payments are down", opened[0].WorkLog[0].Text[:0]+"Payments are down")

	resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", bytes.NewReader(amAlert(time.Now())))
	require.NoError(t, err)
	resp.Body.Close()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, got := incidents(c, addr, betaToken, "")
		assert.True(c, len(got) == 1 && got[0].State == "resolved" && got[0].ID == opened[0].ID)
	}, 30*time.Second, 200*time.Millisecond)
	_, got := incidents(t, addr, alphaToken, "")
	require.Empty(t, got)
}

// TestCrashDuringAlertStream kills samdrift with SIGKILL at random moments,
// 20 times, while alerts keep arriving (retried as Alertmanager retries:
// until a 2xx), and checks the final incidents: one per key, none lost,
// none duplicated, each in its final state.
func TestCrashDuringAlertStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue())
	data := filepath.Join(dir, "data")
	const keys = 30
	const kills = 20
	rnd := rand.New(rand.NewPCG(1, 2))
	p := start(t, freeAddr(t), "run", "--config", cfg, "--data-dir", data)
	sent := 0
	send := func(body []byte) {
		// Retry until accepted, across kills and restarts.
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, "http://"+p.Addr+"/api/v1/alerts", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+alphaToken)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					sent++
					return
				}
				require.GreaterOrEqual(t, resp.StatusCode, 500, "only temporary errors may be retried")
			}
			require.Less(t, attempt, 200)
			time.Sleep(50 * time.Millisecond)
		}
	}
	start0 := time.Now().Add(-time.Minute)
	lbl := func(k int) map[string]string {
		return map[string]string{"alertname": fmt.Sprintf("K%02d", k), "service": "web", "severity": "critical"}
	}
	for kill := 0; kill < kills; kill++ {
		// A burst of alerts: every key fires; even keys then resolve.
		for k := range keys {
			send(webhook("firing", start0, lbl(k)))
		}
		for k := 0; k < keys; k += 2 {
			send(webhook("resolved", start0, lbl(k)))
		}
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		p.Kill()
		p = start(t, freeAddr(t), "run", "--config", cfg, "--data-dir", data)
	}
	var got []incident
	defer func() {
		if t.Failed() {
			t.Logf("metrics:\n%s", samdriftMetrics(t, p.Addr))
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var code int
		code, got = incidents(t, p.Addr, opsToken, "")
		open, resolved := 0, 0
		for _, inc := range got {
			switch inc.State {
			case "open":
				open++
			case "resolved":
				resolved++
			}
		}
		if code == http.StatusOK && len(got) == keys && open == keys/2 && resolved == keys/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incidents after %d kills (HTTP %d): %d: %v", kills, code, len(got), summarize(got))
		}
		time.Sleep(250 * time.Millisecond)
	}
	perKey := map[string]int{}
	for _, inc := range got {
		perKey[inc.Key]++
		n, _ := fmt.Sscanf(inc.AlertName, "K%d", new(int))
		require.Equal(t, 1, n)
		wantState := "open"
		if strings.HasSuffix(inc.AlertName, "0") || strings.HasSuffix(inc.AlertName, "2") || strings.HasSuffix(inc.AlertName, "4") || strings.HasSuffix(inc.AlertName, "6") || strings.HasSuffix(inc.AlertName, "8") {
			wantState = "resolved"
		}
		require.Equal(t, wantState, inc.State, inc.AlertName)
	}
	for k, n := range perKey {
		require.Equal(t, 1, n, "key %s has %d incidents", k, n)
	}
	t.Logf("%d webhook posts accepted across %d SIGKILLs: %d incidents, 0 lost, 0 duplicated", sent, kills, len(got))
}

func summarize(incs []incident) []string {
	var out []string
	for _, i := range incs {
		out = append(out, i.AlertName+":"+i.State)
	}
	return out
}

// samdriftMetrics returns Samdrift's own series from /metrics.
func samdriftMetrics(t T, addr string) string {
	resp, err := metricsGet(addr)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "samdrift_") && !strings.Contains(l, "_bucket") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
