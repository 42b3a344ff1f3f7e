package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/rules"
)

// writeSlotHistory writes, as a TSDB block in an agency's store directory,
// the SLA slots (one per 15 s, good unless in one of down) of a service
// from start to end, and the 5-minute aggregates the rules would have
// recorded from them.
func writeSlotHistory(t *testing.T, dir, agency string, loc *time.Location, start, end time.Time, services map[string][][2]time.Time) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o750))
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, end.Sub(start).Milliseconds()+int64(time.Hour/time.Millisecond))
	require.NoError(t, err)
	defer w.Close()
	app := w.Appender(context.Background())
	for svc, down := range services {
		isDown := func(ts time.Time) bool {
			for _, d := range down {
				if !ts.Before(d[0]) && ts.Before(d[1]) {
					return true
				}
			}
			return false
		}
		var good, count float64
		for ts := start; ts.Before(end); ts = ts.Add(15 * time.Second) {
			month := ts.In(loc).Format("2006-01")
			v := 1.0
			if isDown(ts) {
				v = 0
			}
			_, err := app.Append(0, labels.FromStrings("__name__", "sla:slot:good", "agency", agency, "service", svc, "month", month), ts.UnixMilli(), v)
			require.NoError(t, err)
			good, count = good+v, count+1
			if next := ts.Add(15 * time.Second); next.Sub(start)%(5*time.Minute) == 0 {
				for name, val := range map[string]float64{"sla:slot:good_sum5m": good, "sla:slot:count5m": count} {
					_, err := app.Append(0, labels.FromStrings("__name__", name, "agency", agency, "service", svc, "month", month), next.UnixMilli(), val)
					require.NoError(t, err)
				}
				good, count = 0, 0
			}
		}
	}
	require.NoError(t, app.Commit())
	_, err = w.Flush(context.Background())
	require.NoError(t, err)
}

// TestSLARestatement: last month alpha's web service was down for 45
// minutes during a change alpha itself asked for. An admin restates the
// window as excluded (through the CLI): alpha's month figure rises by
// exactly those 45 minutes of bad time, the restatement and its reason are
// in alpha's report (JSON and HTML), alpha's other service and beta are
// unchanged to the byte, agencies may not restate, and withdrawing the
// restatement restores the figure. Both are in the audit log.
func TestSLARestatement(t *testing.T) {
	t.Parallel()
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	now := time.Now().In(loc)
	lastStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, loc).AddDate(0, -1, 0)
	lastEnd := lastStart.AddDate(0, 1, 0)
	month := lastStart.Format("2006-01")
	outage := [2]time.Time{lastStart.AddDate(0, 0, 9).Add(10 * time.Hour), lastStart.AddDate(0, 0, 9).Add(10*time.Hour + 45*time.Minute)}
	other := [2]time.Time{lastStart.AddDate(0, 0, 12).Add(3 * time.Hour), lastStart.AddDate(0, 0, 12).Add(3*time.Hour + 20*time.Minute)}

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// This month too, when it is old enough: a 20-minute outage an hour in.
	thisStart, thisEnd := lastEnd, now.Add(-15*time.Minute).Truncate(5*time.Minute)
	thisOutage := [2]time.Time{thisStart.Add(time.Hour), thisStart.Add(time.Hour + 20*time.Minute)}
	portal := thisEnd.Sub(thisStart) > 3*time.Hour
	if portal {
		writeSlotHistory(t, filepath.Join(data, "tsdb", "alpha"), "alpha", loc, thisStart, thisEnd, map[string][][2]time.Time{"web": {thisOutage}})
	}
	writeSlotHistory(t, filepath.Join(data, "tsdb", "alpha"), "alpha", loc, lastStart, lastEnd, map[string][][2]time.Time{"web": {outage}, "api": {other}})
	writeSlotHistory(t, filepath.Join(data, "tsdb", "beta"), "beta", loc, lastStart, lastEnd, map[string][][2]time.Time{"web": {outage}})
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
defaults: {evaluation_interval: 15s}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
  admin:
    credentials: [{name: sla-desk, token_sha256: %s}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services:
      - {id: web, name: Web, tier: high, sla: {availability: 99.5}, probes: [{http: "http://127.0.0.1:1/"}]}
      - {id: api, name: API, tier: high, sla: {availability: 99.5}, probes: [{http: "http://127.0.0.1:1/"}]}
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
    services:
      - {id: web, name: Web, tier: high, sla: {availability: 99.5}, probes: [{http: "http://127.0.0.1:1/"}]}
`, catalogue.HashToken(opsToken), catalogue.HashToken(adminToken), catalogue.HashToken(alphaToken), catalogue.HashToken(betaToken)))
	auditLog := filepath.Join(dir, "audit.log")
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", data, "--audit-log", auditLog)
	base := "http://" + addr

	rep := func(token string) report.SLA {
		r, err := client(addr, token).Get("/api/v1/reports/sla?month=" + month)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.Status, r.Body)
		var env struct{ Data report.SLA }
		require.NoError(t, json.Unmarshal([]byte(r.Body), &env))
		return env.Data
	}
	fig := func(r report.SLA, svc string) rules.MonthFigure {
		for _, f := range r.Services {
			if f.Service == svc {
				return f
			}
		}
		t.Fatalf("no %s in %s's report", svc, r.Agency)
		return rules.MonthFigure{}
	}
	asJSON := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}
	alpha0, beta0 := rep(alphaToken), rep(betaToken)
	web0 := fig(alpha0, "web")
	require.True(t, web0.HasData)
	require.InDelta(t, 45*60, web0.DownSeconds, 0, "the outage: 45 minutes of bad slots")
	require.Empty(t, alpha0.Restatements)

	// Agencies may not restate, not even their own services.
	body := fmt.Sprintf(`{"agency":"alpha","service":"web","from":%q,"to":%q,"kind":"excluded","reason":"mine"}`,
		outage[0].Format(time.RFC3339), outage[1].Format(time.RFC3339))
	r, err := client(addr, alphaToken).Do(http.MethodPost, "/api/v1/admin/sla/restatements", "application/json", []byte(body))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, r.Status, r.Body)

	reason := "change CHG-4711 requested by Alpha; agreed in the service review"
	out := cli(t, 0, "sla", "restate", "--url", base, "--token", adminToken, "--agency", "alpha", "--service", "web",
		"--from", outage[0].Format(time.RFC3339), "--to", outage[1].Format(time.RFC3339), "--kind", "excluded", "--reason", reason)
	require.Contains(t, out, "excluded")
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")

	alpha1, beta1 := rep(alphaToken), rep(betaToken)
	web1 := fig(alpha1, "web")
	require.InDelta(t, web0.Counted-180, web1.Counted, 0, "the window's 180 slots leave the month")
	require.InDelta(t, web0.Good, web1.Good, 0)
	require.InDelta(t, 0, web1.DownSeconds, 0, "the figure rises by exactly the 45 minutes of bad time")
	require.Greater(t, web1.Availability, web0.Availability)
	require.Equal(t, asJSON(fig(alpha0, "api")), asJSON(fig(alpha1, "api")), "alpha's other service unchanged to the byte")
	require.Equal(t, asJSON(beta0.Services), asJSON(beta1.Services), "beta unchanged to the byte, though its outage has the same window")
	require.Empty(t, beta1.Restatements)
	require.Len(t, alpha1.Restatements, 1)
	require.Equal(t, reason, alpha1.Restatements[0].Reason, "alpha sees the reason")
	require.Equal(t, "sla-desk", alpha1.Restatements[0].By)
	require.NotNil(t, alpha1.Restatements[0].Effect)
	html, err := client(addr, alphaToken).Get("/api/v1/reports/sla?format=html&month=" + month)
	require.NoError(t, err)
	require.Contains(t, html.Body, "CHG-4711")

	// Refused: an overlapping one, a window across months, another
	// agency's service, a window too recent to be aggregated.
	for _, bad := range []struct {
		body string
		code int
	}{
		{strings.Replace(body, `"mine"`, `"again"`, 1), http.StatusConflict},
		{fmt.Sprintf(`{"agency":"alpha","service":"web","from":%q,"to":%q,"kind":"excluded","reason":"x"}`, lastEnd.Add(-time.Hour).Format(time.RFC3339), lastEnd.Add(time.Hour).Format(time.RFC3339)), http.StatusBadRequest},
		{fmt.Sprintf(`{"agency":"alpha","service":"nope","from":%q,"to":%q,"kind":"excluded","reason":"x"}`, other[0].Format(time.RFC3339), other[1].Format(time.RFC3339)), http.StatusBadRequest},
		{fmt.Sprintf(`{"agency":"alpha","service":"api","from":%q,"to":%q,"kind":"excluded","reason":"x"}`, time.Now().Add(-time.Minute).Format(time.RFC3339), time.Now().Format(time.RFC3339)), http.StatusBadRequest},
		{fmt.Sprintf(`{"agency":"alpha","service":"api","from":%q,"to":%q,"kind":"excluded","reason":""}`, other[0].Format(time.RFC3339), other[1].Format(time.RFC3339)), http.StatusBadRequest},
	} {
		r, err := client(addr, adminToken).Do(http.MethodPost, "/api/v1/admin/sla/restatements", "application/json", []byte(bad.body))
		require.NoError(t, err)
		require.Equal(t, bad.code, r.Status, "%s: %s", bad.body, r.Body)
	}

	listed := cli(t, 0, "sla", "restatements", "--url", base, "--token", adminToken, "--agency", "alpha", "--month", month)
	require.Contains(t, listed, id)
	require.Contains(t, listed, "in force")
	cli(t, 0, "sla", "withdraw", "--url", base, "--token", adminToken, "--agency", "alpha", "--reason", "entered against the wrong change", id)
	alpha2 := rep(alphaToken)
	require.Equal(t, asJSON(alpha0.Services), asJSON(alpha2.Services), "withdrawal restores the figures")
	require.Len(t, alpha2.Restatements, 1, "the withdrawn restatement stays on record")
	require.False(t, alpha2.Restatements[0].Active())
	require.Contains(t, cli(t, 0, "sla", "restatements", "--url", base, "--token", adminToken, "--agency", "alpha"), "withdrawn")

	// This month: the agency's portal shows the restatement with its
	// reason and the month figure computed with it.
	if portal {
		cli(t, 0, "sla", "restate", "--url", base, "--token", adminToken, "--agency", "alpha", "--service", "web",
			"--from", thisOutage[0].Format(time.RFC3339), "--to", thisOutage[1].Format(time.RFC3339), "--kind", "counted_good", "--reason", "supplier outage covered by contract clause 7.2")
		jar, err := cookiejar.New(nil)
		require.NoError(t, err)
		hc := &http.Client{Jar: jar}
		resp, err := hc.PostForm(base+"/login", url.Values{"token": {alphaToken}})
		require.NoError(t, err)
		resp.Body.Close()
		resp, err = hc.Get(base + "/agency/alpha")
		require.NoError(t, err)
		page, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, string(page), "Restatements this month")
		require.Contains(t, string(page), "clause 7.2")
		require.Regexp(t, `data-service="web">\s*<td>Web[^<]*<span class="muted">\(high\)</span></td>\s*<td class="num ok">100\.000 %</td>`, string(page),
			"the outage counted good: this month's figure is 100 %")
	}

	entries := auditActions(t, auditLog)
	require.True(t, hasAudit(entries, "sla_restated", "alpha", "sla-desk"))
	require.True(t, hasAudit(entries, "sla_restatement_withdrawn", "alpha", "sla-desk"))
}
