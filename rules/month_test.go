package rules

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// TestMonthCountsOneAgencyOnly: the month figures of one agency, computed on
// a store that holds several agencies' aggregates for the same service id
// (as the provider's own queryable does), count that agency's slots only.
// Before the agency matcher was added to every selector, alpha's month
// summed beta's and gamma's slots too.
func TestMonthCountsOneAgencyOnly(t *testing.T) {
	cat, err := catalogue.Parse([]byte(`provider: {name: P, timezone: UTC}
defaults: {scrape_interval: 1m, evaluation_interval: 1m}
agencies:
  - {id: alpha, name: Alpha, phase: run, services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}}]}
  - {id: beta, name: Beta, phase: run, services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}}]}
  - {id: gamma, name: Gamma, phase: run, services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}}]}
`), "c.yaml")
	require.NoError(t, err)
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	defer db.Close()

	// Two 5-minute aggregates each: alpha all good, beta and gamma all down.
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	app := db.Appender(context.Background())
	for _, a := range []struct {
		agency string
		good   float64
	}{{"alpha", 5}, {"beta", 0}, {"gamma", 0}} {
		for _, at := range []time.Time{start.Add(5 * time.Minute), start.Add(10 * time.Minute)} {
			for metric, v := range map[string]float64{"sla:slot:good_sum5m": a.good, "sla:slot:count5m": 5} {
				ls := labels.FromStrings("__name__", metric, "agency", a.agency, "service", "web", "month", "2026-10")
				_, err := app.Append(0, ls, at.UnixMilli(), v)
				require.NoError(t, err)
			}
		}
	}
	require.NoError(t, app.Commit())

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for _, tc := range []struct {
		agency        string
		good, counted float64
	}{{"alpha", 10, 10}, {"beta", 0, 10}, {"gamma", 0, 10}} {
		figs, err := Month(context.Background(), engine, db, cat, cat.Agency(tc.agency), "2026-10", start.Add(time.Hour))
		require.NoError(t, err)
		require.Len(t, figs, 1)
		require.Equal(t, tc.good, figs[0].Good, tc.agency)
		require.Equal(t, tc.counted, figs[0].Counted, "%s's slots only", tc.agency)
	}
}
