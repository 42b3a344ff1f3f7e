package rules

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// TestBurnRateTiming evaluates the generated rules as production does (each
// group at its own interval) on a 100-minute outage of alpha's web service
// (objective 99.5 %), and checks when each alert fires and resolves.
func TestBurnRateTiming(t *testing.T) {
	c, err := catalogue.LoadFile("testdata/catalogue.yaml")
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
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
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
	probe := labels.FromStrings("__name__", "probe_success", "agency", "alpha", "service", "web", "job", "probe", "instance", "https://alpha.example/", "samdrift_origin", "probe")
	ups := []labels.Labels{
		labels.FromStrings("__name__", "up", "agency", "alpha", "service", "api", "job", "api", "instance", "10.0.0.1:9100", "samdrift_origin", "scrape"),
		labels.FromStrings("__name__", "up", "agency", "alpha", "service", "batch", "job", "batch", "instance", "10.0.0.2:9100", "samdrift_origin", "scrape"),
	}
	cal := NewCalendar()
	firstFiring := map[string]time.Duration{}
	resolved := map[string]time.Duration{}
	wasFiring := map[string]bool{}
	for el := time.Duration(0); el <= 150*time.Minute; el += 15 * time.Second {
		ts := start.Add(el)
		v := 1.0
		if el >= 10*time.Minute && el < 110*time.Minute {
			v = 0
		}
		app := db.Appender(ctx)
		_, err := app.Append(0, probe, ts.UnixMilli(), v)
		require.NoError(t, err)
		for _, u := range ups {
			_, err = app.Append(0, u, ts.UnixMilli(), 1)
			require.NoError(t, err)
		}
		require.NoError(t, cal.Write(ctx, app, a, ts))
		require.NoError(t, app.Commit())
		byName[slotGroup].Eval(ctx, ts)
		if el%(5*time.Minute) == 0 {
			byName["sla-aggregates"].Eval(ctx, ts)
		}
		byName["sla-windows"].Eval(ctx, ts)
		byName["sla-alerts"].Eval(ctx, ts)
		for _, r := range byName["sla-alerts"].AlertingRules() {
			if svc := r.Labels().Get("service"); svc != "" && svc != "web" {
				continue // ServiceDown of api and batch, which stay up
			}
			firing := false
			for _, al := range r.ActiveAlerts() {
				if al.State == rules.StateFiring && al.Labels.Get("service") == "web" {
					firing = true
				}
			}
			name := r.Name()
			if firing && !wasFiring[name] {
				if _, ok := firstFiring[name]; !ok {
					firstFiring[name] = el
				}
			}
			if !firing && wasFiring[name] {
				resolved[name] = el
			}
			wasFiring[name] = firing
		}
	}
	// ServiceDown (for: 1m) fires a minute into the outage and resolves with it.
	require.Equal(t, 11*time.Minute, firstFiring["ServiceDown"])
	require.Equal(t, 110*time.Minute, resolved["ServiceDown"])
	// Fast burn: the 1h error ratio passes 14.4 × 0.5 % at the fourth bad
	// slot of 44 (4/44 = 9.1 %); it resolves when the 30m window holds no
	// more than 3 bad slots of 120 (2.5 % < 6 × 0.5 %), 29 minutes after
	// the outage ends.
	require.Equal(t, 10*time.Minute+45*time.Second, firstFiring["SLAErrorBudgetBurnFast"])
	require.Equal(t, 139*time.Minute, resolved["SLAErrorBudgetBurnFast"])
	// Slow burn: once the first 5-minute aggregate holding bad slots exists.
	require.Equal(t, 15*time.Minute, firstFiring["SLAErrorBudgetBurnSlow"])
	_, slowResolved := resolved["SLAErrorBudgetBurnSlow"]
	require.False(t, slowResolved, "a 100-minute outage keeps the 1d/2h ticket alert firing")
}
