package demo

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/deploy"
	"github.com/samdrift/samdrift/rules"
)

// TestBackfill: the backfilled aggregates give last month's report exactly
// the figures the history's slots make (counted slot by slot here, with
// the rules' own scope function), the flaky services miss their objective
// and the others meet it, and a second backfill leaves written agencies
// alone.
func TestBackfill(t *testing.T) {
	c, err := catalogue.Parse(deploy.DemoCatalogue, "demo.yaml")
	require.NoError(t, err)
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	h := NewHistory(c, now)
	dir := t.TempDir()
	st, err := Backfill(context.Background(), c, h, dir, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, 7, st.Agencies)

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	slot := time.Duration(c.Defaults.EvaluationInterval)
	latencies := 0
	for _, id := range []string{"bo", "ehm", "digg"} {
		a := c.Agency(id)
		db, err := tsdb.Open(filepath.Join(dir, id), nil, nil, tsdb.DefaultOptions(), nil)
		require.NoError(t, err)
		figs, err := rules.Month(context.Background(), engine, db, c, a, "2026-11", now)
		require.NoError(t, err)
		require.NoError(t, db.Close())
		start, end, err := rules.MonthBounds("2026-11", a.Location())
		require.NoError(t, err)
		for _, f := range figs {
			svc := a.Service(f.Service)
			var good, counted float64
			for ts := start; ts.Before(end); ts = ts.Add(slot) {
				if rules.InScope(a, svc, ts) {
					counted++
					if h.Up(id, svc.ID, ts) {
						good++
					}
				}
			}
			require.InDelta(t, counted, f.Counted, 0, "%s/%s counted slots", id, f.Service)
			require.InDelta(t, good, f.Good, 0, "%s/%s good slots", id, f.Service)
			_, flaky := Outages[id+"/"+f.Service]
			require.Equal(t, !flaky, f.Met, "%s/%s: %.4f against %.4f", id, f.Service, f.Availability, f.Objective)
			if svc.SLA.Latency != nil {
				require.NotNil(t, f.Latency, "%s/%s has a latency figure", id, f.Service)
				require.True(t, f.Latency.HasData)
				require.InDelta(t, 0.985, f.Latency.Ratio, 0.005, "1–2 %% of the requests slow")
				latencies++
			}
		}
	}

	require.Equal(t, 1, latencies, "digg's API has a latency objective in the demo")

	again, err := Backfill(context.Background(), c, h, dir, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Zero(t, again.Agencies, "agencies with data are left alone")
}
