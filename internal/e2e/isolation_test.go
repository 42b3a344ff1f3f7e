package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/golang/snappy"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/internal/testutil"
)

// The marker every piece of beta's data carries; any answer to alpha that
// contains it is a leak.
const betaMarker = "betasecret"

// isolation records the attempts of the suite and what leaked.
type isolation struct {
	t        *testing.T
	attempts []isoAttempt
}

type isoAttempt struct {
	surface, attempt string
	status           int
	leaked           bool
}

// read records a read attempt: a leak if the answer carries beta's marker.
func (s *isolation) read(surface, attempt string, status int, body string) {
	s.attempts = append(s.attempts, isoAttempt{surface, attempt, status, strings.Contains(strings.ToLower(body), betaMarker)})
}

// write records a write attempt whose effect was checked: leaked says it
// changed beta's data.
func (s *isolation) write(surface, attempt string, status int, leaked bool) {
	s.attempts = append(s.attempts, isoAttempt{surface, attempt, status, leaked})
}

func (s *isolation) report() int {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "surface\tattempt by alpha on beta's data\tstatus\tleaked")
	leaks := 0
	for _, a := range s.attempts {
		l := "no"
		if a.leaked {
			l, leaks = "LEAK", leaks+1
		}
		st := "-"
		if a.status != 0 {
			st = fmt.Sprint(a.status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.surface, a.attempt, st, l)
	}
	tw.Flush()
	fmt.Fprintf(&b, "isolation suite: %d attempts, %d leaks\n", len(s.attempts), leaks)
	s.t.Log("\n" + b.String())
	if out := os.Getenv("SAMDRIFT_ISOLATION_REPORT"); out != "" {
		if f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintf(f, "== %s\n%s\n", s.t.Name(), b.String())
			f.Close()
		}
	}
	return leaks
}

func do(t T, method, u, token, ctype string, body []byte) (int, string) {
	helper(t)
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIsolationSuite: for every HTTP endpoint and NATS subject an agency
// can reach, alpha's credentials try to read or change beta's data. The
// suite lists every attempt and counts the leaks, which must be 0.
func TestIsolationSuite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	// NATS with agency accounts, as `samdrift agency onboard` writes them.
	an := testutil.StartAgencyNATS(t, dir, "alpha", "beta")
	ns := an.Server

	// Beta has a rule file: its rules must not show to alpha.
	rulesFile := filepath.Join(dir, "beta-rules.yml")
	writeFile(t, rulesFile, `groups:
  - name: betasecret_group
    rules:
      - record: betasecret:requests:rate5m
        expr: sum(rate(isolation_betasecret_total[5m]))
      - alert: BetasecretAlwaysFiring
        expr: vector(1)
        labels: {service: web, severity: warning}
`)
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, strings.Replace(pushCatalogue(), "  - id: beta\n    name: Beta\n    phase: run\n",
		"  - id: beta\n    name: Beta\n    phase: run\n    rule_files: ["+rulesFile+"]\n", 1))
	addr := freeAddr(t)
	base := "http://" + addr
	auditPath := filepath.Join(dir, "audit.log")
	proc := start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--audit-log", auditPath,
		"--log.level", "debug", "--nats.url", an.ProviderURL())

	// Beta's data: pushed samples, an alert and its incident, a rule.
	now := time.Now()
	require.Equal(t, 204, pushRW(t, addr, betaToken, ts(now, 1, "__name__", "isolation_betasecret_total", "secret", betaMarker+"-label")).code)
	require.Equal(t, 200, postAlerts(t, addr, betaToken, webhook("firing", now.Add(-time.Minute),
		map[string]string{"alertname": "BetasecretDiskFull", "service": "web", "severity": "critical", "detail": betaMarker})).code)
	var betaIncident string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, incs := incidents(c, addr, betaToken, "")
		for _, i := range incs {
			if i.AlertName == "BetasecretDiskFull" {
				betaIncident = i.ID
			}
		}
		assert.True(c, betaIncident != "" && len(query(c, addr, betaToken, `isolation_betasecret_total`)) == 1)
	}, 20*time.Second, 100*time.Millisecond)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := get(c, base+"/prometheus/api/v1/rules", betaToken)
		assert.Contains(c, body, "betasecret_group")
	}, 20*time.Second, 200*time.Millisecond, "beta sees its own rules (the suite's reads are meaningful)")
	// Alpha has data too, so that empty answers are not the only answers.
	require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(now, 1, "__name__", "isolation_alpha_total")).code)

	s := &isolation{t: t}
	month := now.Format("2006-01")

	// The Prometheus query API.
	promQueries := []string{
		`{agency="beta"}`, `{agency=~"beta|alpha"}`, `{agency=~".+"}`, `{__name__=~".+"}`,
		`isolation_betasecret_total`, `{secret=~"betasecret.*"}`, `{exported_agency="beta"}`,
		`count by (agency, __name__, secret) ({__name__=~".+"})`, `label_replace({agency="beta"}, "x", "$1", "agency", "(.*)")`,
		`betasecret:requests:rate5m`, `ALERTS`, `ALERTS{alertname=~"Betasecret.*"}`,
		`absent(nonexistent{agency="beta"})`, `{__name__=~".+", agency!="alpha"}`,
	}
	for _, q := range promQueries {
		for _, path := range []string{"/query", "/query_range"} {
			v := url.Values{"query": {q}}
			if path == "/query_range" {
				v.Set("start", fmt.Sprint(now.Add(-time.Hour).Unix()))
				v.Set("end", fmt.Sprint(now.Add(time.Minute).Unix()))
				v.Set("step", "15")
			}
			st, body := do(t, http.MethodPost, base+"/prometheus/api/v1"+path, alphaToken, "application/x-www-form-urlencoded", []byte(v.Encode()))
			s.read("query API", path+" "+q, st, body)
		}
	}
	for _, m := range []string{`{agency="beta"}`, `{__name__=~".+"}`, `{agency=~".+"}`, `{secret!=""}`} {
		v := url.Values{"match[]": {m}}
		for _, path := range []string{"/series", "/labels", "/label/agency/values", "/label/__name__/values", "/label/secret/values"} {
			st, body := get(t, base+"/prometheus/api/v1"+path+"?"+v.Encode(), alphaToken)
			s.read("query API", path+" match[]="+m, st, body)
		}
	}
	for _, path := range []string{"/labels", "/label/__name__/values", "/label/secret/values", "/label/alertname/values",
		"/metadata", "/rules", "/alerts", "/query_exemplars?query=" + url.QueryEscape(`{agency="beta"}`),
		"/targets", "/status/config", "/status/tsdb", "/admin/tsdb/snapshot"} {
		st, body := get(t, base+"/prometheus/api/v1"+path, alphaToken)
		s.read("query API", path, st, body)
	}

	// Incidents.
	for _, q := range []string{"", "agency=beta", "service=web", "state=open", "agency=beta&state=open"} {
		st, body := get(t, base+"/api/v1/incidents?"+q, alphaToken)
		s.read("incidents API", "GET /api/v1/incidents?"+q, st, body)
	}
	st, body := get(t, base+"/api/v1/incidents/"+betaIncident, alphaToken)
	s.read("incidents API", "GET beta's incident by id", st, body)
	for _, action := range []string{"ack", "assign", "notes"} {
		st, body := do(t, http.MethodPost, base+"/api/v1/incidents/"+betaIncident+"/"+action, alphaToken, "application/json",
			[]byte(`{"by":"alpha-intruder","assignee":"alpha-intruder","text":"alpha was here"}`))
		_, after := get(t, base+"/api/v1/incidents/"+betaIncident, betaToken)
		s.read("incidents API", "POST "+action+" on beta's incident (answer)", st, body)
		s.write("incidents API", "POST "+action+" on beta's incident (effect)", st, strings.Contains(after, "alpha-intruder") || strings.Contains(after, "alpha was here"))
	}

	// Reports, admin API, console.
	for _, p := range []string{
		"/api/v1/reports/sla?agency=beta&month=" + month, "/api/v1/reports/sla?agency=beta&month=" + month + "&format=html",
		"/api/v1/reports/sla?month=" + month,
		"/api/v1/admin/usage", "/api/v1/admin/agencies/beta", "/api/v1/admin/agencies/beta/export",
		"/", "/agency/beta", "/agency/beta/report?month=" + month, "/agency/alpha", "/runbooks",
		"/metrics", "/-/ready", "/-/healthy",
	} {
		st, body := get(t, base+p, alphaToken)
		s.read("reports, admin, console, status", "GET "+p, st, body)
	}
	st, _ = do(t, http.MethodDelete, base+"/api/v1/admin/agencies/beta/data", alphaToken, "", nil)
	s.write("admin API", "DELETE beta's data", st, len(query(t, addr, betaToken, `isolation_betasecret_total`)) != 1)

	// Writes that name beta: they land in alpha's data, never in beta's.
	pushRW(t, addr, alphaToken, ts(now, 7, "__name__", "alpha_forged_total", "agency", "beta"))
	postAlerts(t, addr, alphaToken, webhook("firing", now.Add(-time.Minute), map[string]string{"alertname": "AlphaForged", "agency": "beta", "service": "web", "severity": "critical"}))
	otlp := []byte(`{"resourceMetrics":[{"resource":{"attributes":[{"key":"agency","value":{"stringValue":"beta"}},{"key":"service.name","value":{"stringValue":"web"}}]},"scopeMetrics":[{"metrics":[{"name":"alpha_forged_otlp","gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"` + fmt.Sprint(now.UnixNano()) + `"}]}}]}]}]}`)
	st, _ = do(t, http.MethodPost, base+"/otlp/v1/metrics", alphaToken, "application/json", otlp)
	require.Less(t, st, 300)

	// NATS: alpha's own account publishes on its subject, forges others,
	// and tries to listen to the provider's and beta's subjects.
	nc, err := nats.Connect("nats://"+ns.Addr().String(), nats.UserInfo("alpha", "alpha-nats-secret"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = nats.Connect("nats://"+ns.Addr().String(), nats.UserInfo("beta", "alpha-nats-secret"))
	s.write("NATS", "connect as beta with alpha's password", 0, err == nil)
	heard := make(chan string, 100)
	for _, subj := range []string{">", "agency.beta.>", "ingest.>", "$JS.API.>", "samdrift.>"} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) { heard <- m.Subject + " " + string(m.Data) })
		if err == nil {
			defer func() { _ = sub.Unsubscribe() }()
		}
	}
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "alpha_nats_forged_total"}, {Name: "agency", Value: "beta"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: now.UnixMilli()}},
	}}}
	raw, err := wr.Marshal()
	require.NoError(t, err)
	payload := snappy.Encode(nil, raw)
	js, err := nc.JetStream()
	require.NoError(t, err)
	_, err = js.Publish(bus.AgencyMetricsSubject, payload)
	require.NoError(t, err, "alpha's own NATS publish is accepted")
	for _, subj := range []string{bus.IngestSubject(bus.KindMetrics, bus.SourceNATS, "beta"), bus.AgencySubject("beta", bus.KindMetrics),
		"ingest.metrics.push.beta-cred", "$JS.API.STREAM.PURGE." + bus.StreamMetrics} {
		require.NoError(t, nc.Publish(subj, payload))
	}
	require.NoError(t, nc.Flush())
	// Another agency's stored data after every forged write has had time.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `alpha_nats_forged_total{exported_agency="beta"}`), 1)
		assert.Len(c, query(c, addr, alphaToken, `alpha_forged_total{exported_agency="beta"}`), 1)
	}, 20*time.Second, 200*time.Millisecond, "the forged writes land in alpha's own data")
	// Every forged write went through the same path as the two above, which
	// have landed: anything that was going to reach beta has too.
	for _, q := range []string{`{__name__=~"alpha_.*"}`, `{exported_agency="beta"}`, `{__name__=~".+", agency!="beta"}`} {
		s.write("writes naming beta", "beta's store after alpha's forged push, OTLP, webhook and NATS publishes: "+q, 0, len(query(t, addr, betaToken, q)) != 0)
	}
	_, betaIncs := incidents(t, addr, betaToken, "")
	forged := false
	for _, i := range betaIncs {
		forged = forged || i.AlertName == "AlphaForged"
	}
	s.write("writes naming beta", "beta's incidents after alpha's forged alert", 0, forged)
	close(heard)
	var overheard []string
	for h := range heard {
		overheard = append(overheard, h)
	}
	s.write("NATS", "alpha's subscriptions to >, agency.beta.>, ingest.>, $JS.API.>, samdrift.>", 0, len(overheard) > 0)
	s.write("NATS", "beta's stored data intact after a forged purge request", 0, len(query(t, addr, betaToken, `isolation_betasecret_total`)) != 1)

	require.Zero(t, s.report(), "leaks")

	// Every cross-agency read that named beta was audited.
	f, err := os.Open(auditPath)
	require.NoError(t, err)
	defer f.Close()
	denied := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Action string         `json:"action"`
			Agency string         `json:"agency"`
			Detail map[string]any `json:"detail"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
		if e.Action == "cross_agency_denied" && e.Agency == "alpha" {
			denied[fmt.Sprint(e.Detail["path"])]++
		}
	}
	require.Positive(t, denied["/prometheus/api/v1/query"], "queries naming beta are audited: %v", denied)
	require.Positive(t, denied["/prometheus/api/v1/series"])
	require.Positive(t, denied["/agency/beta"])
	require.Positive(t, denied["/api/v1/reports/sla"])

	// No secret is ever logged, at debug level either: not in the process
	// log, not in the audit trail.
	auditText, err := os.ReadFile(auditPath)
	require.NoError(t, err)
	for _, secret := range []string{alphaToken, betaToken, opsToken, "alpha-nats-secret", "provider@"} {
		require.NotContains(t, proc.Logs.String(), secret)
		require.NotContains(t, string(auditText), secret)
	}
}
