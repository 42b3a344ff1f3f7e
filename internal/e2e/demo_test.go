package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestDemo: `samdrift demo --remedy-sim` shows every demo agency's data
// through the query API within a minute, each agency token sees only its
// own, and the failing services' incidents arrive in the Remedy simulator
// under their agency's company.
func TestDemo(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	began := time.Now()
	p := start(t, addr, "demo", "--data-dir", filepath.Join(t.TempDir(), "demo"), "--remedy-sim")
	require.Eventually(t, func() bool { return strings.Contains(p.Logs.String(), "ops-demo-token") }, 10*time.Second, 50*time.Millisecond)
	agencies := []string{"af", "bo", "digg", "ehm", "pm", "ssc", "tullverket"}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, "ops-demo-token", `count by (agency) (up)`), len(agencies))
	}, 60*time.Second, time.Second)
	for _, a := range agencies {
		got := query(t, addr, a+"-demo-token", `up`)
		require.NotEmpty(t, got, a)
		for _, s := range got {
			require.Equal(t, a, s.Metric["agency"])
		}
	}
	// The simulated services expose application metrics too.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.NotEmpty(c, query(c, addr, "digg-demo-token", `rate(http_requests_total[1m])`))
	}, 30*time.Second, time.Second)

	// bo's complaints service fails 30s in; its outage alert (for: 1m)
	// becomes an incident of bo within two minutes of the start.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, incs := incidents(c, addr, "bo-demo-token", "")
		assert.True(c, slices.ContainsFunc(incs, func(inc incident) bool {
			// A live one (the demo's history holds resolved ones too).
			return inc.Service == "anmalan" && inc.AlertName == "ServiceDown" && inc.OpenedAt.After(began)
		}))
	}, 150*time.Second, time.Second)
	_, digg := incidents(t, addr, "digg-demo-token", "")
	for _, inc := range digg {
		require.Equal(t, "digg", inc.Agency)
	}

	// The incident is in the Remedy simulator under company BO; BO's agent
	// sees it, DIGG's agent sees nothing of it.
	m := regexp.MustCompile(`Remedy simulator: (http://[0-9.:]+)/`).FindStringSubmatch(p.Logs.String())
	require.NotNil(t, m, "banner names the simulator")
	remedyEntries := func(user string) string {
		resp, err := http.PostForm(m[1]+"/api/jwt/login", url.Values{"username": {user}, "password": {"demo-remedy-password"}})
		require.NoError(t, err)
		tok, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(tok))
		req, _ := http.NewRequest(http.MethodGet, m[1]+"/api/arsys/v1/entry/HPD:IncidentInterface", nil)
		req.Header.Set("Authorization", "AR-JWT "+string(tok))
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	require.Eventually(t, func() bool {
		body := remedyEntries("bo-agent")
		return strings.Contains(body, `"Company":"BO"`) && strings.Contains(body, "anmalan")
	}, 60*time.Second, time.Second)
	require.NotContains(t, remedyEntries("digg-agent"), `"Company":"BO"`)
	require.Regexp(t, `^INC\d{12}$`, boTicket(t, addr), "the API shows the Remedy incident number")
	p.Stop()
}

// TestTracing: with --tracing.endpoint a scraped batch is traced from the
// collector through the router to the store as one trace, the context
// carried in NATS headers.
func TestTracing(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	spans := map[string]map[string]bool{} // trace id -> span names
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					id := string(s.TraceId)
					if spans[id] == nil {
						spans[id] = map[string]bool{}
					}
					spans[id][s.Name] = true
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer otlp.Close()

	alpha := target(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, testCatalogue(alpha.Listener.Addr().String(), "127.0.0.1:1"))
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--tracing.endpoint", otlp.URL+"/v1/traces")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, names := range spans {
			if names["collector.scrape"] && names["router.route"] && names["store.append"] {
				return true
			}
		}
		return false
	}, 60*time.Second, 500*time.Millisecond, "no trace spans collector → router → store")
}

// boTicket returns the ticket of bo's first open incident as the API shows
// it (a live one: the demo's past incidents are resolved).
func boTicket(t T, addr string) string {
	var ticket string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := get(c, "http://"+addr+"/api/v1/incidents?agency=bo&state=open", "bo-demo-token")
		m := regexp.MustCompile(`"ticket":"(INC\d+)"`).FindStringSubmatch(body)
		if assert.NotNil(c, m, "bo's incident has its Remedy number") {
			ticket = m[1]
		}
	}, 30*time.Second, 500*time.Millisecond)
	return ticket
}

// TestDemoOnboarding: on the demo, a new agency goes from `agency onboard`
// to probe data and running SLA rules in seconds; the usage and SLA
// reports come out for the month; the agency survives a demo restart.
func TestDemoOnboarding(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	base := "http://" + addr
	data := filepath.Join(t.TempDir(), "demo")
	p := start(t, addr, "demo", "--data-dir", data)
	cfg := filepath.Join(data, "demo.yaml")

	began := time.Now()
	out := cli(t, 0, "agency", "onboard", "--config", cfg, "--id", "jo", "--name", "Justitieombudsmannen",
		"--service", "web=Webb", "--probe", "web="+base+"/-/healthy", "--wait", base)
	token := regexp.MustCompile(`token: (sd_\S+)`).FindStringSubmatch(out)[1]
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, token, `probe_success`)
		if assert.Len(c, v, 1) {
			assert.Equal(c, "jo", v[0].Metric["agency"])
		}
	}, 20*time.Second, 100*time.Millisecond, "the new agency's probe data")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, token, `sla:slot:good`)
		if assert.Len(c, v, 1) {
			assert.Equal(c, "web", v[0].Metric["service"])
		}
	}, 20*time.Second, 100*time.Millisecond, "the new agency's SLA rules evaluate")
	t.Logf("demo: onboard → probe data and SLA rules in %.1fs", time.Since(began).Seconds())
	code, body := get(t, base+"/api/v1/incidents?agency=digg", token)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, `"agency":"digg"`, "the new agency sees no other agency's incidents")

	month := time.Now().In(mustLoc(t, "Europe/Stockholm")).Format("2006-01")
	out = cli(t, 0, "report", "usage", "--url", base, "--token", "admin-demo-token", "--month", month)
	for _, a := range []string{"digg", "jo", "tullverket"} {
		require.Contains(t, out, a, out)
	}
	repDir := t.TempDir()
	out = cli(t, 0, "report", "sla", "--url", base, "--token", "admin-demo-token", "--agency", "digg", "--month", month, "--out", repDir)
	require.FileExists(t, filepath.Join(repDir, "sla-digg-"+month+".html"), out)
	if strings.Contains(out, ".pdf") {
		require.FileExists(t, filepath.Join(repDir, "sla-digg-"+month+".pdf"))
	}
	cli(t, 1, "report", "sla", "--url", base, "--token", "jo-not-a-token", "--agency", "digg", "--month", month, "--out", repDir)

	// Restart: the onboarded agency and its data are still there.
	p.Stop()
	start(t, addr, "demo", "--data-dir", data)
	v := query(t, addr, token, `probe_success`)
	require.Len(t, v, 1, "jo's token and data survive a demo restart")
}
