package metering_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/metering"
)

var update = flag.Bool("update", false, "rewrite testdata/usage-2026-10.csv")

const cat = `provider: {name: P, timezone: Europe/Stockholm}
agencies:
  - {id: alpha, name: A, phase: run, services: [{id: web, name: W, tier: low}]}
  - {id: beta, name: B, phase: run, services: [{id: web, name: W, tier: low}]}
  - {id: gamma, name: G, phase: build, services: [{id: web, name: W, tier: low}]}
`

func setup(t *testing.T, dir string, now func() time.Time) (*metering.Meter, *catalogue.Holder, *bus.Bus, *prometheus.Registry) {
	t.Helper()
	c, err := catalogue.Parse([]byte(cat), "c.yaml")
	require.NoError(t, err)
	h := catalogue.NewHolder(c)
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dir})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	m, err := metering.New(t.Context(), metering.Options{Bus: b, Catalogue: h, Now: now, Registerer: reg})
	require.NoError(t, err)
	return m, h, b, reg
}

// TestMonthlyUsage counts per agency, month (in the agency's time zone) and
// phase, keeps peaks of gauges, survives a restart, and renders the CSV
// golden file with shares that only run-phase usage carries.
func TestMonthlyUsage(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	// 2026-09-30 22:30 UTC is already October in Stockholm.
	now := time.Date(2026, 9, 30, 22, 30, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m, h, b, reg := setup(t, dir, clock)
	ctx := context.Background()

	m.Add("alpha", metering.Samples, 6000)
	m.Add("beta", metering.Samples, 2000)
	m.Add("gamma", metering.Samples, 500)
	m.Add("alpha", metering.Queries, 3)
	m.Add("beta", metering.Alerts, 2)
	m.Add("beta", metering.Incidents, 1)
	m.Add("alpha", metering.RuleEvals, 40)
	series := map[string]float64{"alpha": 300, "beta": 100, "gamma": 10}
	m.Gauge(metering.Series, func() map[string]float64 { return series })
	m.Gauge(metering.StoredBytes, func() map[string]float64 {
		return map[string]float64{"alpha": 3 << 20, "beta": 1 << 20, "gamma": 4096}
	})
	require.NoError(t, m.Flush(ctx))
	series = map[string]float64{"alpha": 200, "beta": 100, "gamma": 10} // peak stays 300
	m.Add("alpha", metering.Samples, 2000)
	require.NoError(t, m.Flush(ctx))
	require.InDelta(t, 8000, testutil.ToFloat64(mustCounter(t, reg, "alpha", metering.Samples)), 0)

	// gamma moves to run mid-month: its later usage is counted apart.
	c2, err := catalogue.Parse([]byte(cat[:len(cat)-len("build, services: [{id: web, name: W, tier: low}]}\n")]+"run, services: [{id: web, name: W, tier: low}]}\n"), "c.yaml")
	require.NoError(t, err)
	h.Set(c2)
	m.Add("gamma", metering.Samples, 100)
	require.NoError(t, m.Flush(ctx))
	b.Close()

	// Restart: the month is read back from JetStream.
	m, _, b, _ = setup(t, dir, clock)
	defer b.Close()
	recs, err := m.Month(ctx, "2026-10")
	require.NoError(t, err)
	require.Len(t, recs, 4)
	got := metering.CSV(recs)
	golden := filepath.Join("testdata", "usage-2026-10.csv")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got)

	shares := metering.Shares(recs)
	sum := 0.0
	for i, r := range recs {
		if r.Phase != "run" {
			require.Zero(t, shares[i], "%s %s", r.Agency, r.Phase)
			require.Equal(t, "onboarding project", metering.Funded(r.Phase))
		}
		sum += shares[i]
	}
	require.InDelta(t, 1, sum, 1e-9, "run-phase shares add up to the whole")

	none, err := m.Month(ctx, "2026-09")
	require.NoError(t, err)
	require.Empty(t, none, "nothing counted in September")
	_, err = m.Month(ctx, "October")
	require.Error(t, err)
}

// TestConcurrentMeters: two processes metering the same agency both count.
func TestConcurrentMeters(t *testing.T) {
	c, err := catalogue.Parse([]byte(cat), "c.yaml")
	require.NoError(t, err)
	h := catalogue.NewHolder(c)
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	now := func() time.Time { return time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC) }
	var ms []*metering.Meter
	for range 2 {
		m, err := metering.New(t.Context(), metering.Options{Bus: b, Catalogue: h, Now: now})
		require.NoError(t, err)
		ms = append(ms, m)
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			for range 50 {
				m.Add("alpha", metering.Samples, 10)
				require.NoError(t, m.Flush(t.Context()))
			}
		})
	}
	wg.Wait()
	recs, err := ms[0].Month(t.Context(), "2026-10")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, 1000.0, recs[0].Values[metering.Samples])
}

func mustCounter(t *testing.T, reg *prometheus.Registry, agency, kind string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "samdrift_usage_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if ls["agency"] == agency && ls["kind"] == kind {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no samdrift_usage_total{agency=%q,kind=%q}", agency, kind)
	return nil
}
