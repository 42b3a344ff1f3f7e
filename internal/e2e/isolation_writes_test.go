package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/testutil"
	"github.com/samdrift/samdrift/tenancy"
)

// floodSize is the alerts of one agency's flood: 40,000 in the long form
// (make test-isolation, SAMDRIFT_ISOLATION=full), 2,000 in make test.
func floodSize() int {
	if os.Getenv("SAMDRIFT_ISOLATION") == "full" {
		return 40000
	}
	return 2000
}

// rssBytes is a process's resident memory now and at its peak.
func rssBytes(pid int) (now, peak int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &kb); err == nil {
			now = kb << 10
		}
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); err == nil {
			peak = kb << 10
		}
	}
	return now, peak
}

// TestIsolationWritesAndLoad: alpha, with its own valid credentials only,
// writes what a hostile or broken agency would — series named like the
// provider's, bodies at every size limit, malformed native histograms
// through every receiver, floods of alerts and queries — and tries to
// forge sessions and hold connections. Beta's figures, incidents, latency
// and the process's memory are checked after each, and every sample and
// alert alpha was acknowledged is accounted for. The suite lists each
// attempt; the count of effects must be 0.
func TestIsolationWritesAndLoad(t *testing.T) {
	dir := t.TempDir()
	an := testutil.StartAgencyNATS(t, dir, "alpha", "beta") // 1 MiB messages, as NATS's default
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	defer target.Close()
	var hookMu sync.Mutex
	notified := map[string]time.Time{} // alertname -> first notification
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n struct {
			Incident struct {
				AlertName string `json:"alertname"`
			} `json:"incident"`
		}
		_ = json.NewDecoder(r.Body).Decode(&n)
		hookMu.Lock()
		if _, ok := notified[n.Incident.AlertName]; !ok {
			notified[n.Incident.AlertName] = time.Now()
		}
		hookMu.Unlock()
	}))
	defer hook.Close()
	flood := floodSize()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
defaults: {scrape_interval: 1s, evaluation_interval: 1s}
notifications:
  - {name: oncall-beta, agencies: [beta], events: [opened], webhook: {url: %q}}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    limits: {alert_ingestion_rate: 100000, alert_ingestion_burst_size: %d, max_concurrent_queries: 2,
             max_outstanding_requests_per_tenant: 4, max_samples_per_query: 2000000}
    services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}, probes: [{http: %q, interval: 1s}]}]
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}, probes: [{http: %q, interval: 1s}]}]
`, catalogue.HashToken(opsToken), hook.URL, catalogue.HashToken(alphaToken), flood+20000, target.URL, catalogue.HashToken(betaToken), target.URL))
	addr := freeAddr(t)
	base := "http://" + addr
	auditPath := filepath.Join(dir, "audit.log")
	proc := start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--audit-log", auditPath,
		"--nats.url", an.ProviderURL(), "--web.read-timeout", "2s", "--push.max-body-bytes", "8MiB")
	alpha, beta, ops := client(addr, alphaToken), client(addr, betaToken), client(addr, opsToken)
	s := &isolation{t: t}
	began := time.Now()
	stage := func(name string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), name) }
	now := time.Now()
	month := now.In(mustLoc(t, "Europe/Stockholm")).Format("2006-01")

	// Both agencies' SLA slots run on the provider's probes.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, opsToken, `sla:slot:good{service="web"} == 1`)
		assert.Len(c, v, 2)
	}, 30*time.Second, 200*time.Millisecond)
	betaReport := func() string {
		r, err := ops.Get("/api/v1/reports/sla?agency=beta&month=" + month)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.Status, r.Body)
		var env struct {
			Data struct {
				Services json.RawMessage `json:"services"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Body), &env))
		return string(env.Data.Services)
	}
	betaBefore := betaReport()

	stage("provider series")
	// 1. Series named like the provider's, pushed for seconds on end so
	// that every slot evaluation sees them fresh.
	forged := []prompb.TimeSeries{
		ts(now, 0, "__name__", "probe_success", "service", "web"),
		ts(now, 0, "__name__", "probe_success", "service", "web", "samdrift_origin", "probe", "job", "probe", "instance", target.URL),
		ts(now, 0, "__name__", "up", "service", "web", "samdrift_origin", "scrape"),
		ts(now, 0, "__name__", "samdrift_sla_in_scope", "service", "web"),
		ts(now, 0, "__name__", "sla:slot:good_sum5m", "service", "web", "month", month),
		ts(now, 1e6, "__name__", "sla:slot:count5m", "service", "web", "month", month),
		ts(now, 0.1, "__name__", "sla:objective", "service", "web", "tier", "high"),
		ts(now, float64(now.Add(-time.Hour).Unix()), "__name__", "ALERTS_FOR_STATE", "alertname", "ServiceDown", "service", "web", "severity", "critical", "tier", "high"),
		ts(now, 1, "__name__", "ALERTS", "alertname", "ServiceDown", "alertstate", "firing", "service", "web"),
	}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		at := time.Now()
		for i := range forged {
			forged[i].Samples[0].Timestamp = at.UnixMilli()
		}
		r, err := alpha.Push(forged...)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, r.Status, "a provider's name is stored renamed, not refused: %s", r.Body)
		time.Sleep(250 * time.Millisecond)
	}
	bad := query(t, addr, alphaToken, `min_over_time(sla:slot:good{service="web"}[5s]) < 1`)
	s.write("provider series", "alpha pushes probe_success, up, samdrift_sla_in_scope 0 for its own service: its SLA slots", http.StatusNoContent, len(bad) > 0)
	renamed := query(t, addr, alphaToken, `{__name__=~"exported_(sla:.*|samdrift_.*|ALERTS.*)"}`)
	s.write("provider series", "alpha's sla:*, samdrift_* and ALERTS* pushes are stored as exported_*", http.StatusNoContent, len(renamed) < 5)
	s.write("provider series", "alpha's pushed samdrift_origin label is kept as exported_samdrift_origin", 0,
		len(query(t, addr, alphaToken, `probe_success{exported_samdrift_origin="probe"}`)) == 0)
	code, pr := api(t, addr, opsToken, "/query", url.Values{"query": {`sla:availability:ratio_rate5m - on(agency, service) group_left() sla:objective`}})
	s.read("provider series", "NOC panel joining sla:objective after alpha pushed a duplicate (ops)", code, "")
	s.write("provider series", "NOC panel answers without a duplicate-series error", code, code != http.StatusOK || pr.Status != "success")
	s.write("provider series", "beta's month figures (API, as ops) after alpha pushed SLA aggregates", 0, betaReport() != betaBefore)
	r, err := ops.Get("/api/v1/reports/sla?agency=beta&month=" + month + "&format=html")
	require.NoError(t, err)
	s.write("provider series", "beta's HTML report after alpha's pushes", r.Status, strings.Contains(r.Body, "1000000") || strings.Contains(r.Body, "0.12"))

	stage("size limits")
	// 2. Bodies around the size limits. The bus takes 1 MiB messages: a
	// 3 MiB body fits the push limit but not the bus; it is split, never
	// lost. Over the push limit, 413 names the limit.
	const bigSeries = 30000
	big := make([]prompb.TimeSeries, bigSeries)
	for i := range big {
		b := make([]byte, 40)
		_, _ = rand.Read(b)
		big[i] = ts(time.Now(), float64(i), "__name__", "alpha_big", "n", strconv.Itoa(i), "pad", hex.EncodeToString(b))
	}
	body := rwBody(t, big...)
	require.Greater(t, len(body), 2<<20, "the body is larger than the bus's messages")
	r, err = alpha.PushBody(body)
	require.NoError(t, err)
	s.write("size limits", fmt.Sprintf("a %d KiB body (bus takes 1 MiB): acknowledged and stored whole", len(body)>>10), r.Status, r.Status != http.StatusNoContent)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, alphaToken, `count(alpha_big)`)
		if assert.Len(c, v, 1) {
			assert.InDelta(c, float64(bigSeries), v[0].Float(), 0)
		}
	}, 30*time.Second, 250*time.Millisecond, "every acknowledged sample of the big body")
	huge := make([]byte, 9<<20)
	r, err = alpha.PushBody(huge)
	require.NoError(t, err)
	s.write("size limits", "a body over --push.max-body-bytes: 413 naming the limit", r.Status, r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "limit"))

	// 10,000 alerts in one post: every one is part of an incident.
	var many []map[string]string
	for i := range 10000 {
		many = append(many, map[string]string{"alertname": fmt.Sprintf("AlphaBatch%d", i%10), "service": "web", "severity": "warning", "instance": strconv.Itoa(i)})
	}
	posted := time.Now()
	r, err = alpha.PostAlerts(webhook("firing", now.Add(-time.Minute), many...))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.Status, r.Body)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		incs, err := alpha.Incidents("")
		require.NoError(c, err)
		counted := 0
		for _, inc := range incs {
			if strings.HasPrefix(inc.AlertName, "AlphaBatch") {
				counted += inc.Count
			}
		}
		assert.Equal(c, 10000, counted)
	}, 60*time.Second, 500*time.Millisecond, "10,000 alerts of one post, all in incidents")
	t.Logf("10,000 alerts of one post in incidents after %s", time.Since(posted).Round(100*time.Millisecond))
	s.write("size limits", "10,000 alerts in one webhook post: all become incidents", r.Status, false)

	stage("native histograms")
	// 3. Malformed native histograms, through every receiver: refused at
	// the door with 400 naming the series, or (NATS) dropped and counted;
	// what follows is stored.
	invalid := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 1}, ZeroCount: &prompb.Histogram_ZeroCountInt{},
		PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{5}, Timestamp: time.Now().UnixMilli()}
	r, err = alpha.PushBody(rwBody(t, prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "alpha_bad_hist"}}, Histograms: []prompb.Histogram{invalid}}))
	require.NoError(t, err)
	s.write("native histograms", "remote write 1.0 histogram with buckets over its count: 400 naming it", r.Status, r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "alpha_bad_hist"))
	st := writev2.NewSymbolTable()
	h := &histogram.Histogram{Count: 1, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{5}}
	req := writev2.Request{Timeseries: []writev2.TimeSeries{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "alpha_bad_hist2"), nil),
		Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, time.Now().UnixMilli(), h)}}}}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	require.NoError(t, err)
	r2 := post(t, base+"/api/v1/push", alphaToken, "application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", snappy.Encode(nil, raw))
	s.write("native histograms", "remote write 2.0 invalid histogram: 400 naming it", r2.code, r2.code != http.StatusBadRequest || !strings.Contains(r2.body, "alpha_bad_hist2"))
	otlp := []byte(`{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},"scopeMetrics":[{"metrics":[{"name":"alpha_bad_exp","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"` +
		fmt.Sprint(time.Now().UnixNano()) + `","count":"1","sum":1,"scale":0,"zeroCount":"0","positive":{"offset":0,"bucketCounts":["7"]}}]}}]}]}]}`)
	r2 = post(t, base+"/otlp/v1/metrics", alphaToken, "application/json", "", otlp)
	s.write("native histograms", "OTLP exponential histogram with bucket counts over its count: 400", r2.code, r2.code != http.StatusBadRequest)
	nc, err := nats.Connect("nats://"+an.Server.Addr().String(), nats.UserInfo("alpha", "alpha-nats-secret"))
	require.NoError(t, err)
	defer nc.Close()
	js, err := nc.JetStream()
	require.NoError(t, err)
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "alpha_bad_hist3"}}, Histograms: []prompb.Histogram{invalid}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "alpha_nats_after"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}}},
	}}
	rawNATS, err := wr.Marshal()
	require.NoError(t, err)
	_, err = js.Publish(bus.AgencyMetricsSubject, snappy.Encode(nil, rawNATS))
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `alpha_nats_after`), 1)
	}, 20*time.Second, 200*time.Millisecond)
	s.write("native histograms", "over NATS: the invalid histogram is dropped, the rest of the batch stored", 0, len(query(t, addr, alphaToken, `alpha_bad_hist3`)) != 0)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `sla:slot:good{service="web"} == 1`), 1)
	}, 10*time.Second, 200*time.Millisecond)
	s.write("native histograms", "alpha's later samples (its provider probes) are stored after all of it", 0, false)

	stage("floods")
	// 4. Floods. Alpha sends its alerts in four posts at once; beta's one
	// new alert becomes an incident within 5s, and its on-call is told.
	var wg sync.WaitGroup
	floodAcked := 0
	var floodMu sync.Mutex
	for p := range 4 {
		wg.Go(func() {
			var as []map[string]string
			for i := range flood / 4 {
				as = append(as, map[string]string{"alertname": fmt.Sprintf("AlphaFlood%d", p*flood/4+i), "service": "web", "severity": "critical"})
			}
			r, err := alpha.PostAlerts(webhook("firing", now.Add(-time.Minute), as...))
			if err == nil && r.Status == http.StatusOK {
				floodMu.Lock()
				floodAcked += len(as)
				floodMu.Unlock()
			}
		})
	}
	wg.Wait()
	sent := time.Now()
	r, err = beta.PostAlerts(webhook("firing", now.Add(-time.Minute), map[string]string{"alertname": "BetaQuiet", "service": "web", "severity": "critical"}))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.Status, r.Body)
	var betaAfter time.Duration
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		incs, err := beta.Incidents("")
		require.NoError(c, err)
		for _, inc := range incs {
			if inc.AlertName == "BetaQuiet" {
				betaAfter = time.Since(sent)
				return
			}
		}
		c.Errorf("no incident yet")
	}, 60*time.Second, 50*time.Millisecond)
	t.Logf("during alpha's flood of %d alerts (%d acknowledged), beta's incident appeared after %s", flood, floodAcked, betaAfter.Round(time.Millisecond))
	s.write("load", fmt.Sprintf("alpha floods %d alerts: beta's new incident within 5s (took %s)", flood, betaAfter.Round(time.Millisecond)), 0, betaAfter > 5*time.Second)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		hookMu.Lock()
		defer hookMu.Unlock()
		assert.Contains(c, notified, "BetaQuiet")
	}, 60*time.Second, 100*time.Millisecond)
	hookMu.Lock()
	notifyAfter := notified["BetaQuiet"].Sub(sent)
	hookMu.Unlock()
	t.Logf("beta's on-call notification after %s", notifyAfter.Round(time.Millisecond))
	s.write("load", fmt.Sprintf("beta's on-call notification within 10s during alpha's flood (took %s)", notifyAfter.Round(time.Millisecond)), 0, notifyAfter > 10*time.Second)

	// The NOC's incident list is paged: the first page, at once, bounded.
	r, err = ops.Get("/api/v1/incidents?limit=100")
	require.NoError(t, err)
	var page struct {
		Data struct {
			Incidents []json.RawMessage `json:"incidents"`
			Next      string            `json:"next"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.Body), &page))
	t.Logf("NOC incident list, first page: %d incidents, %d KiB, %s", len(page.Data.Incidents), len(r.Body)>>10, r.Took.Round(time.Millisecond))
	s.write("load", "NOC incident list during the flood: a page of 100 within 2s", r.Status, len(page.Data.Incidents) != 100 || page.Data.Next == "" || r.Took > 2*time.Second)

	// Every acknowledged alert of the flood becomes its incident.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		incs, err := alpha.Incidents("")
		require.NoError(c, err)
		n := 0
		for _, inc := range incs {
			if strings.HasPrefix(inc.AlertName, "AlphaFlood") {
				n++
			}
		}
		assert.Equal(c, floodAcked, n)
	}, 5*time.Minute, time.Second, "every acknowledged alert of the flood")
	t.Logf("all %d of alpha's flood incidents stored %s after the flood", floodAcked, time.Since(sent).Round(time.Second))
	s.write("load", fmt.Sprintf("every one of alpha's %d acknowledged alerts is an incident", floodAcked), 0, false)

	stage("heavy queries")
	// Heavy queries: alpha runs six expensive queries at once; they are
	// held to its limits, beta is answered within 2s, memory stays bounded.
	heavy := `max_over_time(alpha_big[30m:1ms])`
	var heavyCodes []int
	var hmu sync.Mutex
	for range 6 {
		wg.Go(func() {
			code, _ := api(t, addr, alphaToken, "/query", url.Values{"query": {heavy}})
			hmu.Lock()
			heavyCodes = append(heavyCodes, code)
			hmu.Unlock()
		})
	}
	var betaQuery time.Duration
	for range 5 {
		began := time.Now()
		v, err := beta.Query(`sum(sla:slot:good)`)
		require.NoError(t, err)
		require.NotEmpty(t, v)
		betaQuery = max(betaQuery, time.Since(began))
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	_, peak := rssBytes(proc.Pid())
	t.Logf("alpha's heavy queries answered %v; beta's slowest query %s; samdrift peak RSS %d MiB", heavyCodes, betaQuery.Round(time.Millisecond), peak>>20)
	for _, c := range heavyCodes {
		s.write("load", fmt.Sprintf("alpha's heavy query held to its limits (%d)", c), c, c != http.StatusUnprocessableEntity && c != http.StatusTooManyRequests)
	}
	s.write("load", fmt.Sprintf("beta's queries within 2s during alpha's heavy queries (slowest %s)", betaQuery.Round(time.Millisecond)), 0, betaQuery > 2*time.Second)
	s.write("load", fmt.Sprintf("samdrift's peak memory under 2 GiB (%d MiB)", peak>>20), 0, peak > 2<<30)

	stage("exhaustion")
	// 5. Exhaustion and injection.
	size := func() int64 {
		fi, err := os.Stat(auditPath)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	auditBefore := size()
	hugeQ := `up{agency="beta"} or ` + strings.Repeat(`up{job="x"} or `, 300_000) + `up`
	for range 3 {
		r, err := alpha.Do(http.MethodPost, "/prometheus/api/v1/query", "application/x-www-form-urlencoded", []byte(url.Values{"query": {hugeQ}}.Encode()))
		require.NoError(t, err)
		s.write("exhaustion", fmt.Sprintf("a %d MB query: refused before it is parsed, naming max_query_expression_size_bytes", len(hugeQ)>>20), r.Status,
			r.Status != http.StatusUnprocessableEntity || !strings.Contains(r.Body, "max_query_expression_size_bytes"))
	}
	longQ := `up{agency="beta"} or ` + strings.Repeat(`up{job="x"} or `, 10_000) + `up`
	for range 3 {
		_, _ = alpha.Do(http.MethodPost, "/prometheus/api/v1/query", "application/x-www-form-urlencoded", []byte(url.Values{"query": {longQ}}.Encode()))
	}
	grew := size() - auditBefore
	s.write("exhaustion", fmt.Sprintf("three %d KiB queries naming beta grow the audit trail by %d KiB", len(longQ)>>10, grew>>10), 0, grew == 0 || grew > 16<<10)

	stage("sessions")
	// Console sessions: a random id, not the token; gone at logout;
	// never set from another site.
	form := url.Values{"token": {alphaToken}}.Encode()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	loginReq, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(form))
	loginReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	loginReq.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := noRedirect.Do(loginReq)
	require.NoError(t, err)
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == tenancy.SessionCookie {
			session = ck
		}
	}
	require.NotNil(t, session)
	s.write("sessions", "the console cookie holds a session id, not the bearer token", resp.StatusCode, strings.Contains(session.Value, alphaToken))
	s.write("sessions", "the session expires", 0, session.MaxAge <= 0)
	page1 := func() int {
		req, _ := http.NewRequest(http.MethodGet, base+"/agency/alpha", nil)
		req.AddCookie(session)
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if strings.Contains(b.String(), `name="token"`) {
			return http.StatusUnauthorized // the sign-in page
		}
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, page1(), "signed in")
	logout, _ := http.NewRequest(http.MethodPost, base+"/logout", nil)
	logout.AddCookie(session)
	logout.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = noRedirect.Do(logout)
	require.NoError(t, err)
	resp.Body.Close()
	s.write("sessions", "the session's cookie after logout", page1(), page1() == http.StatusOK)
	cross, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(form))
	cross.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	cross.Header.Set("Origin", "https://evil.example")
	cross.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = noRedirect.Do(cross)
	require.NoError(t, err)
	resp.Body.Close()
	setCookie := false
	for _, ck := range resp.Cookies() {
		setCookie = setCookie || ck.Name == tenancy.SessionCookie
	}
	s.write("sessions", "a cross-site POST /login", resp.StatusCode, setCookie || resp.StatusCode != http.StatusForbidden)

	stage("trickle")
	// A client that trickles its request is cut off (--web.read-timeout 2s).
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n", alphaToken)
	opened := time.Now()
	closed := false
	for time.Since(opened) < 10*time.Second {
		if _, err := conn.Write([]byte("x")); err != nil {
			closed = true
			break
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 1024)); err != nil && !os.IsTimeout(err) {
			closed = true
			break
		}
	}
	s.write("exhaustion", fmt.Sprintf("a trickled request body holds its connection (cut after %s)", time.Since(opened).Round(100*time.Millisecond)), 0, !closed)

	// No server paths in API answers.
	r, err = alpha.Get("/prometheus/api/v1/rules")
	require.NoError(t, err)
	pathShown := strings.Contains(r.Body, dir) || strings.Contains(r.Body, `"file":"/`)
	if pathShown {
		t.Logf("rules API: %s", r.Body)
	}
	s.write("exhaustion", "the rules API shows no server paths", r.Status, pathShown)

	stage("done")
	require.Zero(t, s.report(), "cross-agency effects")
}
