package rules

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// The month fixture: October 2026 in Europe/Stockholm (daylight saving time
// ends on the 25th), one service probed every minute, with business-hours
// service hours, one-off and recurring maintenance, outages inside and
// outside the counted time, and missing probe samples.
const fixtureCatalogue = `provider: {name: P, timezone: Europe/Stockholm}
defaults: {scrape_interval: 1m, evaluation_interval: 1m}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    maintenance:
      - {name: migration, start: "2026-10-14T09:00:00+02:00", end: "2026-10-14T11:00:00+02:00"}
      - {name: patching, schedule: "last Thu of month 15:00-16:00"}
    services:
      - id: web
        name: Web
        tier: high
        sla: {availability: 99.5, service_hours: "Mon-Fri 07:00-18:00"}
        probes: [{http: "https://alpha.example/", interval: 1m, timeout: 10s}]
`

type fixture struct {
	loc      *time.Location
	start    time.Time // first minute of October, local
	end      time.Time // first minute of November, local
	value    map[int64]float64
	missing  map[int64]bool
	agency   *catalogue.Agency
	service  *catalogue.Service
	cat      *catalogue.Catalogue
	sampleAt func(minute time.Time) time.Time // when the probe of a minute ran
	slotAt   func(minute time.Time) time.Time // when the slot of a minute is evaluated
}

func newFixture(t *testing.T) *fixture {
	cat, err := catalogue.Parse([]byte(fixtureCatalogue), "fixture.yaml")
	require.NoError(t, err)
	loc, _ := time.LoadLocation("Europe/Stockholm")
	f := &fixture{
		loc: loc, cat: cat, agency: cat.Agency("alpha"),
		start:    time.Date(2026, 10, 1, 0, 0, 0, 0, loc),
		end:      time.Date(2026, 11, 1, 0, 0, 0, 0, loc),
		value:    map[int64]float64{},
		missing:  map[int64]bool{},
		sampleAt: func(m time.Time) time.Time { return m.Add(20 * time.Second) },
		slotAt:   func(m time.Time) time.Time { return m.Add(40 * time.Second) },
	}
	f.service = f.agency.Service("web")
	down := func(from, to time.Time) {
		for m := from; m.Before(to); m = m.Add(time.Minute) {
			f.value[m.Unix()] = 0
		}
	}
	d := func(day, h, min int) time.Time { return time.Date(2026, 10, day, h, min, 0, 0, loc) }
	down(d(6, 10, 0), d(6, 10, 45))    // Tue: counts, 45 minutes
	down(d(10, 0, 0), d(11, 0, 0))     // Sat: outside service hours
	down(d(14, 9, 30), d(14, 10, 30))  // in the one-off maintenance
	down(d(29, 15, 10), d(29, 15, 40)) // in "last Thu of month" maintenance
	down(d(26, 7, 0), d(26, 7, 5))     // Mon after the DST change: counts
	down(d(30, 17, 55), d(30, 18, 10)) // Fri: 5 counted minutes, 10 after hours
	for m := d(8, 14, 0); m.Before(d(8, 14, 30)); m = m.Add(time.Minute) {
		f.missing[m.Unix()] = true // Thu: the prober did not run; counts as down
	}
	i := 0
	for m := f.start.Add(-2 * time.Hour); m.Before(f.end); m = m.Add(time.Minute) {
		i++
		if i%1009 == 0 {
			f.value[m.Unix()] = 0 // scattered single failures
		}
	}
	return f
}

func (f *fixture) probe(m time.Time) (float64, bool) {
	if f.missing[m.Unix()] {
		return 0, false
	}
	if v, ok := f.value[m.Unix()]; ok {
		return v, true
	}
	return 1, true
}

// expect computes the month-to-date figures by hand, slot by slot, up to and
// including the slot of minute last.
func (f *fixture) expect(last time.Time) (good, total, scopeSeconds float64) {
	inMaint := func(t time.Time) bool { return f.agency.InMaintenance(t) }
	for m := f.start; m.Before(f.end); m = m.Add(time.Minute) {
		lt := m.In(f.loc)
		wd := lt.Weekday()
		hours := wd >= time.Monday && wd <= time.Friday && lt.Hour() >= 7 && lt.Hour() < 18
		counted := hours && !inMaint(m)
		if counted {
			scopeSeconds += 60
		}
		if !counted || m.After(last) {
			continue
		}
		// The slot at m+40s sees the probe of m+20s; a missing probe leaves
		// only the one of m-40s, older than interval+timeout (70s): down.
		total++
		if v, ok := f.probe(m); ok {
			good += v
		}
	}
	return good, total, scopeSeconds
}

// MonthFixture is the month fixture evaluated into a TSDB, shared by the
// rules tests and the report tests (rules_test); built once per test run.
type MonthFixture struct {
	*fixture
	DB      *tsdb.DB
	Engine  *promql.Engine
	Cat     *catalogue.Catalogue
	LastAgg time.Time // minute of the last aggregate evaluation
}

var (
	monthOnce sync.Once
	monthFix  *MonthFixture
	monthErr  error
	monthDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if monthFix != nil {
		monthFix.DB.Close()
	}
	if monthDir != "" {
		os.RemoveAll(monthDir)
	}
	os.Exit(code)
}

// BuildMonthFixture evaluates the generated rules over the fixture's month
// as the engine does, once.
func BuildMonthFixture(t *testing.T) *MonthFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("evaluates a month of rules")
	}
	monthOnce.Do(func() { monthFix, monthErr = buildMonthFixture(t) })
	require.NoError(t, monthErr)
	return monthFix
}

func buildMonthFixture(t *testing.T) (*MonthFixture, error) {
	f := newFixture(t)
	dir, err := os.MkdirTemp("", "samdrift-month-fixture-")
	if err != nil {
		return nil, err
	}
	monthDir = dir
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0 // keep the whole month
	db, err := tsdb.Open(filepath.Join(dir, "tsdb"), nil, nil, opts, nil)
	if err != nil {
		return nil, err
	}
	ls := labels.FromStrings("__name__", "probe_success", "agency", "alpha", "service", "web", "instance", "https://alpha.example/", "job", "probe", "samdrift_origin", "probe")
	// The generated rules, evaluated at every slot as the engine does.
	gen, err := GenerateSLA(f.cat, f.agency, "http://samdrift.test")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "sla.yml")
	if err := os.WriteFile(file, gen, 0o600); err != nil {
		return nil, err
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc: rules.EngineQueryFunc(engine, db), AppendableV2: db, Queryable: db,
		Context: context.Background(), NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
	})
	groups, errs := m.LoadGroups(time.Minute, labels.EmptyLabels(), "", nil, false, file)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	byName := map[string]*rules.Group{}
	for _, g := range groups {
		byName[g.Name()] = g
	}
	cal := NewCalendar()
	ctx := context.Background()
	var lastAgg time.Time
	// Time moves on as in production: each minute the probe result lands,
	// then the slot of that minute is evaluated (and every five minutes the
	// aggregates).
	for mn := f.start.Add(-time.Hour); mn.Before(f.end); mn = mn.Add(time.Minute) {
		ts := f.slotAt(mn)
		app := db.Appender(ctx)
		if v, ok := f.probe(mn); ok {
			if _, err := app.Append(0, ls, f.sampleAt(mn).UnixMilli(), v); err != nil {
				return nil, err
			}
		}
		if err := cal.Write(ctx, app, f.agency, ts); err != nil {
			return nil, err
		}
		if err := app.Commit(); err != nil {
			return nil, err
		}
		byName[slotGroup].Eval(ctx, ts)
		if mn.Minute()%5 == 0 {
			byName["sla-aggregates"].Eval(ctx, ts)
			lastAgg = mn
		}
	}
	byName["sla-month"].Eval(ctx, f.slotAt(lastAgg))
	return &MonthFixture{fixture: f, DB: db, Engine: engine, Cat: f.cat, LastAgg: lastAgg}, nil
}

// Expect is the hand count over the whole month: good and counted slots and
// the seconds in scope.
func (f *MonthFixture) Expect() (good, total, scopeSeconds float64) { return f.expect(f.end) }

// End is the end of the fixture month.
func (f *MonthFixture) End() time.Time { return f.end }

func TestMonthToDateFixture(t *testing.T) {
	mf := BuildMonthFixture(t)
	f, db, engine := mf.fixture, mf.DB, mf.Engine
	lastAgg := mf.LastAgg
	ctx := context.Background()
	at := f.slotAt(lastAgg)

	// The last aggregate ends a minute before it is taken.
	good, total, scope := f.expect(lastAgg.Add(-time.Minute))
	require.Greater(t, total-good, 60.0, "the fixture must have counted downtime")
	got := instant(t, engine, db, `sla:availability:mtd{service="web"}`, at)
	require.Equal(t, good/total, got, "month-to-date availability: %v good of %v slots", good, total)
	budget := instant(t, engine, db, `sla:error_budget_remaining:month{service="web"}`, at)
	require.InDelta(t, 1-(total-good)*60/((1-0.995)*scope), budget, 1e-12)
	require.Equal(t, MonthScopeSeconds(f.agency, f.service, at), scope, "the calendar's month scope matches the hand count")

	// The monthly report's figures, taken after the month, are the same.
	good, total, scope = mf.Expect()
	figs, err := Month(ctx, engine, db, f.cat, f.agency, "2026-10", f.end.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, figs, 1)
	require.Equal(t, good, figs[0].Good)
	require.Equal(t, total, figs[0].Counted)
	require.Equal(t, good/total, figs[0].Availability)
	require.Equal(t, (total-good)*60, figs[0].DownSeconds)
	require.InDelta(t, (total-good)*60/((1-0.995)*scope), figs[0].BudgetUsed, 1e-12)
	require.False(t, figs[0].Met)
	// A month without data says so.
	figs, err = Month(ctx, engine, db, f.cat, f.agency, "2026-08", f.end)
	require.NoError(t, err)
	require.False(t, figs[0].HasData)
	require.True(t, math.IsNaN(figs[0].Availability))
	t.Logf("October: %v of %v counted minutes up (%.5f%%), budget left %.3f", good, total, 100*good/total, budget)
}

func instant(t *testing.T, engine *promql.Engine, db *tsdb.DB, q string, at time.Time) float64 {
	t.Helper()
	qry, err := engine.NewInstantQuery(context.Background(), db, nil, q, at)
	require.NoError(t, err)
	defer qry.Close()
	res := qry.Exec(context.Background())
	require.NoError(t, res.Err)
	v, err := res.Vector()
	require.NoError(t, err)
	require.Len(t, v, 1, "%s at %s", q, at)
	return v[0].F
}
