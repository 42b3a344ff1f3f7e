package dashboards

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	samrules "github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

var update = flag.Bool("update", false, "rewrite the golden dashboards in testdata/golden")

func demoCatalogue(t *testing.T) *catalogue.Catalogue {
	c, err := catalogue.LoadFile("../deploy/demo.yaml")
	require.NoError(t, err)
	return c
}

func marshal(t *testing.T, d Dashboard) []byte {
	b, err := json.MarshalIndent(d, "", "  ")
	require.NoError(t, err)
	return append(b, '\n')
}

// TestGolden: the dashboards generated from the demo catalogue equal the
// reviewed files in testdata/golden (make golden regenerates them).
func TestGolden(t *testing.T) {
	c := demoCatalogue(t)
	noc, agencies := All(c)
	files := map[string]Dashboard{"noc.json": noc}
	for id, d := range agencies {
		files["sla-"+id+".json"] = d
	}
	require.Len(t, files, 8)
	for name, d := range files {
		path := filepath.Join("testdata", "golden", name)
		got := marshal(t, d)
		if *update {
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, got, 0o644))
			continue
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "run make golden")
		require.Equal(t, string(want), string(got), "%s is stale: run make golden and review the diff", path)
	}
}

func TestExpressionsParse(t *testing.T) {
	c := demoCatalogue(t)
	noc, agencies := All(c)
	p := parser.NewParser(parser.Options{})
	for _, d := range append([]Dashboard{noc}, values(agencies)...) {
		for _, e := range Expressions(d) {
			_, err := p.ParseExpr(e)
			require.NoError(t, err, "%s: %s", d.UID(), e)
		}
	}
}

func values(m map[string]Dashboard) []Dashboard {
	var out []Dashboard
	for _, d := range m {
		out = append(out, d)
	}
	return out
}

// TestPanelsReturnData runs every panel query against a store holding two
// hours of demo data: probe and scrape results, the SLA series the generated
// rules record from them, alerts and incidents. Every panel returns data,
// for the NOC over all agencies and for each agency within its own.
func TestPanelsReturnData(t *testing.T) {
	c := demoCatalogue(t)
	st, err := store.New(store.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Apply(c))
	engine := store.NewEngine(nil, nil)
	end := time.Date(2026, 11, 18, 12, 0, 0, 0, time.UTC) // a Wednesday, inside service hours
	start := end.Add(-2 * time.Hour)
	ctx := context.Background()
	dir := t.TempDir()

	for _, a := range c.Agencies {
		db := st.DB(a.ID)
		gen, err := samrules.GenerateSLA(c, a, "http://samdrift.test")
		require.NoError(t, err)
		file := filepath.Join(dir, a.ID+".yml")
		require.NoError(t, os.WriteFile(file, gen, 0o600))
		m := rules.NewManager(&rules.ManagerOptions{
			QueryFunc: rules.EngineQueryFunc(engine, db), AppendableV2: db, Queryable: db, Context: ctx,
			NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
		})
		groups, errs := m.LoadGroups(time.Minute, labels.EmptyLabels(), "", nil, false, file)
		require.Empty(t, errs)
		cal := samrules.NewCalendar()
		var recs []builtin.Record
		for i, svc := range a.Services {
			recs = append(recs, builtin.Record{Incident: ticketing.Incident{ID: fmt.Sprintf("SD-%s-%d", a.ID, i), Agency: a.ID, Service: svc.ID, AlertName: "ServiceDown", State: ticketing.StateOpen, Priority: "High"}})
		}
		for _, g := range groups {
			for _, r := range g.AlertingRules() {
				r.SetRestored(true) // the engine restores `for` state on its first run; here there is none
			}
		}
		for ts := start; !ts.After(end); ts = ts.Add(time.Minute) {
			app := db.Appender(ctx)
			for i, svc := range a.Services {
				up := 1.0
				if i == 0 && ts.After(end.Add(-20*time.Minute)) {
					up = 0 // the first service of each agency fails at the end
				}
				for _, s := range []struct {
					name string
					v    float64
				}{{"probe_success", up}, {"probe_duration_seconds", 0.05}, {"up", up}, {"scrape_duration_seconds", 0.01}} {
					// What Samdrift's own probes and scrapes measured.
					origin := tenancy.OriginScrape
					if strings.HasPrefix(s.name, "probe_") {
						origin = tenancy.OriginProbe
					}
					_, err := app.Append(0, labels.FromStrings("__name__", s.name, "agency", a.ID, "service", svc.ID, "instance", "x", "job", "probe", tenancy.OriginLabel, origin), ts.UnixMilli(), s.v)
					require.NoError(t, err)
				}
			}
			// A latency objective's histogram: 100 requests a minute, 99
			// within 250 ms (classic buckets, as the demo's services expose).
			for _, svc := range a.Services {
				if svc.SLA == nil || svc.SLA.Latency == nil {
					continue
				}
				n := float64(ts.Sub(start)/time.Minute + 1)
				h := svc.SLA.Latency.Histogram
				for _, s := range []struct {
					ls labels.Labels
					v  float64
				}{
					{labels.FromStrings("__name__", h+"_bucket", "agency", a.ID, "service", svc.ID, "le", "0.1"), 50 * n},
					{labels.FromStrings("__name__", h+"_bucket", "agency", a.ID, "service", svc.ID, "le", "0.25"), 99 * n},
					{labels.FromStrings("__name__", h+"_bucket", "agency", a.ID, "service", svc.ID, "le", "+Inf"), 100 * n},
					{labels.FromStrings("__name__", h+"_count", "agency", a.ID, "service", svc.ID), 100 * n},
				} {
					_, err := app.Append(0, s.ls, ts.UnixMilli(), s.v)
					require.NoError(t, err)
				}
			}
			for _, smp := range builtin.IncidentSeries(recs, a.ID, ts) {
				_, err := app.Append(0, smp.Labels, ts.UnixMilli(), smp.Value)
				require.NoError(t, err)
			}
			require.NoError(t, cal.Write(ctx, app, a, ts))
			require.NoError(t, app.Commit())
			for _, g := range groups {
				if g.Name() == "sla-aggregates" && ts.Minute()%5 != 0 {
					continue
				}
				g.Eval(ctx, ts)
			}
		}
	}

	run := func(t *testing.T, id tenancy.Identity, d Dashboard) {
		qctx := tenancy.NewContext(ctx, id)
		for _, q := range d.Queries() {
			if strings.HasPrefix(q.Panel, "annotation ") {
				qr, err := engine.NewRangeQuery(qctx, st.Queryable(), nil, q.Expr, start, end, time.Minute)
				require.NoError(t, err)
				require.NoError(t, qr.Exec(qctx).Err)
				qr.Close()
				continue
			}
			qr, err := engine.NewRangeQuery(qctx, st.Queryable(), nil, q.Expr, end.Add(-time.Hour), end, time.Minute)
			require.NoError(t, err, q.Expr)
			res := qr.Exec(qctx)
			require.NoError(t, res.Err, "%s / %s: %s", d.UID(), q.Panel, q.Expr)
			mat, err := res.Matrix()
			require.NoError(t, err)
			require.NotEmpty(t, mat, "%s / %q returns no data: %s", d.UID(), q.Panel, q.Expr)
			if id.Role == tenancy.RoleAgency {
				for _, s := range mat {
					if a := s.Metric.Get("agency"); a != "" {
						require.Equal(t, id.Agency, a)
					}
				}
			}
			qr.Close()
		}
	}
	noc, agencies := All(c)
	run(t, tenancy.Identity{Role: tenancy.RoleOps}, noc)
	for id, d := range agencies {
		t.Run(id, func(t *testing.T) { run(t, tenancy.Identity{Role: tenancy.RoleAgency, Agency: id}, d) })
	}
}
