package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// TestLatencyObjective evaluates the generated latency rules as production
// does, on two services: "api" exposes a classic histogram (the threshold
// 0.25 s is one of its buckets, written le="0.25"), "web" a native one.
// For 90 minutes 98 % (api) and 99 % (web) of the requests are within
// 250 ms; then api slows down (nine requests in ten over 250 ms). The month
// figures, the windows and the month report match the requests counted
// here, and only api's latency fast-burn alert fires.
func TestLatencyObjective(t *testing.T) {
	c, err := catalogue.Parse([]byte(`provider: {name: P, timezone: Europe/Stockholm}
defaults: {scrape_interval: 15s, evaluation_interval: 15s}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    services:
      - id: api
        name: API
        tier: high
        sla: {availability: 99, latency: {histogram: http_request_duration_seconds, threshold: 0.25, objective: 97}}
        scrape: [{targets: ["10.0.0.1:9100"]}]
      - id: web
        name: Web
        tier: high
        sla: {availability: 99, latency: {histogram: rpc_latency_seconds, threshold: 0.25, objective: 98.5}}
        scrape: [{targets: ["10.0.0.2:9100"]}]
`), "c.yaml")
	require.NoError(t, err)
	a := c.Agency("alpha")
	dir := t.TempDir()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(filepath.Join(dir, "tsdb"), nil, nil, opts, nil)
	require.NoError(t, err)
	defer db.Close()
	gen, err := GenerateSLA(c, a, goldenURL)
	require.NoError(t, err)
	file := filepath.Join(dir, "sla.yml")
	require.NoError(t, os.WriteFile(file, gen, 0o600))
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableNegativeOffset: true})
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc: rules.EngineQueryFunc(engine, db), AppendableV2: db, Queryable: db,
		Context: context.Background(), NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
	})
	groups, errs := m.LoadGroups(15*time.Second, labels.EmptyLabels(), "", nil, false, file)
	require.Empty(t, errs)
	byName := map[string]*rules.Group{}
	for _, g := range groups {
		byName[g.Name()] = g
	}

	ctx := context.Background()
	start := time.Date(2026, 11, 2, 8, 0, 0, 0, a.Location()) // a Monday
	lbl := func(kv ...string) labels.Labels {
		return labels.FromStrings(append([]string{"agency", "alpha", "job", "x", "instance", "i"}, kv...)...)
	}
	cal := NewCalendar()
	// Cumulative counts: classic buckets of api, the native histogram of web.
	var apiFast, apiTotal float64
	web := &histogram.Histogram{Schema: 0, PositiveSpans: []histogram.Span{{Offset: -2, Length: 3}}, PositiveBuckets: []int64{0, 0, 0}}
	var webBuckets [3]int64 // (0.125, 0.25], (0.25, 0.5], (0.5, 1]
	fired := map[string]bool{}
	const slowFrom = 90 * time.Minute
	var wantGood, wantTotal [2]float64 // in the 5-minute aggregates: api, web
	maybe := func(t *testing.T, engine *promql.Engine, db *tsdb.DB, q string, at time.Time) (float64, bool) {
		qry, err := engine.NewInstantQuery(context.Background(), db, nil, q, at)
		require.NoError(t, err)
		defer qry.Close()
		v, err := qry.Exec(context.Background()).Vector()
		require.NoError(t, err)
		if len(v) == 0 {
			return 0, false
		}
		require.Len(t, v, 1, q)
		return v[0].F, true
	}
	for el := time.Duration(0); el <= 120*time.Minute; el += 15 * time.Second {
		ts := start.Add(el)
		// 100 requests of each service per 15 s.
		if el < slowFrom {
			apiFast += 98
		} else {
			apiFast += 10
		}
		apiTotal += 100
		webBuckets[0] += 99
		webBuckets[2]++
		web.Count += 100
		web.Sum += 99*0.2 + 0.8
		web.PositiveBuckets = []int64{webBuckets[0], webBuckets[1] - webBuckets[0], webBuckets[2] - webBuckets[1]}
		app := db.Appender(ctx)
		for _, s := range []struct {
			ls labels.Labels
			v  float64
		}{
			{lbl("__name__", "http_request_duration_seconds_bucket", "service", "api", "le", "0.1"), apiFast / 2},
			{lbl("__name__", "http_request_duration_seconds_bucket", "service", "api", "le", "0.25"), apiFast},
			{lbl("__name__", "http_request_duration_seconds_bucket", "service", "api", "le", "+Inf"), apiTotal},
			{lbl("__name__", "http_request_duration_seconds_count", "service", "api"), apiTotal},
			{lbl("__name__", "up", "service", "api", "samdrift_origin", "scrape"), 1},
			{lbl("__name__", "up", "service", "web", "samdrift_origin", "scrape"), 1},
		} {
			_, err := app.Append(0, s.ls, ts.UnixMilli(), s.v)
			require.NoError(t, err)
		}
		_, err := app.AppendHistogram(0, lbl("__name__", "rpc_latency_seconds", "service", "web"), ts.UnixMilli(), web.Copy(), nil)
		require.NoError(t, err)
		require.NoError(t, cal.Write(ctx, app, a, ts))
		require.NoError(t, app.Commit())
		// In the file's order, as one rule manager's groups at one instant.
		for _, name := range []string{slotGroup, "sla-aggregates", "sla-windows", "sla-month", "sla-latency", "sla-latency-aggregates", "sla-latency-windows", "sla-latency-month", "sla-alerts"} {
			g := byName[name]
			require.NotNil(t, g, name)
			if (g.Name() == "sla-aggregates" || g.Name() == "sla-latency-aggregates") && el%(5*time.Minute) != 0 {
				continue
			}
			if g.Name() == "sla-month" || g.Name() == "sla-latency-month" {
				if el%time.Minute != 0 {
					continue
				}
			}
			g.Eval(ctx, ts)
		}
		// The 5-minute aggregate at ts holds the requests of (ts-6m, ts-1m]
		// as PromQL's increase counts them: read here from the raw series.
		if el%(5*time.Minute) == 0 {
			for i, exprs := range [][2]string{
				{`increase(http_request_duration_seconds_bucket{le="0.25"}[5m] offset 1m)`, `increase(http_request_duration_seconds_count[5m] offset 1m)`},
				{`histogram_fraction(0, 0.25, increase(rpc_latency_seconds[5m] offset 1m)) * histogram_count(increase(rpc_latency_seconds[5m] offset 1m))`, `histogram_count(increase(rpc_latency_seconds[5m] offset 1m))`},
			} {
				g, okG := maybe(t, engine, db, exprs[0], ts)
				n, okN := maybe(t, engine, db, exprs[1], ts)
				if okG && okN {
					wantGood[i] += g
					wantTotal[i] += n
				}
			}
		}
		for _, r := range byName["sla-alerts"].AlertingRules() {
			for _, al := range r.ActiveAlerts() {
				if al.State == rules.StateFiring {
					fired[r.Name()+"/"+al.Labels.Get("service")] = true
				}
			}
		}
	}
	end := start.Add(120 * time.Minute)
	q := func(expr string) float64 { return instant(t, engine, db, expr, end) }
	require.InDelta(t, 0.1, q(`sla:latency:ratio_rate5m{service="api"}`), 1e-9)
	require.InDelta(t, 0.99, q(`sla:latency:ratio_rate5m{service="web"}`), 1e-9)
	require.InDelta(t, 0.97, q(`sla:latency:objective{service="api"}`), 1e-9)
	for i, svc := range []string{"api", "web"} {
		require.InDelta(t, wantTotal[i], q(fmt.Sprintf(`sum(sum_over_time(sla:latency:total5m{service=%q}[31d]))`, svc)), 1e-6, svc)
		require.InDelta(t, wantGood[i], q(fmt.Sprintf(`sum(sum_over_time(sla:latency:good5m{service=%q}[31d]))`, svc)), 1e-6, svc)
		require.InDelta(t, wantGood[i]/wantTotal[i], q(fmt.Sprintf(`sla:latency:mtd{service=%q}`, svc)), 1e-9, svc)
	}
	require.True(t, fired["SLALatencyBudgetBurnFast/api"], "api's slow requests burn its latency budget: %v", fired)
	require.False(t, fired["SLALatencyBudgetBurnFast/web"], "%v", fired)
	require.False(t, fired["SLAErrorBudgetBurnFast/api"], "availability is untouched: %v", fired)

	figs, err := Month(ctx, engine, db, c, a, "2026-11", end)
	require.NoError(t, err)
	require.Len(t, figs, 2)
	for i, f := range figs {
		require.NotNil(t, f.Latency, f.Service)
		require.InDelta(t, wantGood[i], f.Latency.Good, 1e-6)
		require.InDelta(t, wantTotal[i], f.Latency.Total, 1e-6)
		require.InDelta(t, wantGood[i]/wantTotal[i], f.Latency.Ratio, 1e-9)
		require.Equal(t, 0.25, f.Latency.ThresholdSeconds)
	}
	require.False(t, figs[0].Latency.Met, "api: %.4f against 0.97", figs[0].Latency.Ratio)
	require.True(t, figs[1].Latency.Met, "web: %.4f against 0.985", figs[1].Latency.Ratio)
}
