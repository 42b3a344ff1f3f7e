package dashboards

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/samdrift/samdrift/catalogue"
)

// DatasourceUID is the uid of Samdrift's data source in every Grafana
// organisation Samdrift provisions.
const DatasourceUID = "samdrift"

// NOCUID is the uid of the NOC overview.
const NOCUID = "samdrift-noc"

// AgencyUID is the uid of an agency's SLA dashboard.
func AgencyUID(agency string) string { return "samdrift-sla-" + agency }

func ptr[T any](v T) *T { return &v }

var ds = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr(DatasourceUID)}

// query is a PromQL target on Samdrift's data source.
func query(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(ds).Expr(expr)
}

// instantTable is an instant query whose result is a table.
func instantTable(refID, expr string) *prometheus.DataqueryBuilder {
	return query(expr).RefId(refID).Instant().Format(prometheus.PromQueryFormatTable)
}

// layout places panels left to right, wrapping at Grafana's 24 columns,
// with explicit rows (the builders' own placement cannot start a row).
type layout struct {
	d       *dashboard.DashboardBuilder //nolint:staticcheck // v1 dashboards: what Grafana's v1 API and file provisioning take (dashboardv2 needs Grafana 12's v2 API)
	x, y, h int
	n       int
}

// panel is what every panel builder is.
type panel interface {
	cog.Builder[dashboard.Panel]
}

func (l *layout) add(p panel, w, h int, place func(dashboard.GridPos)) {
	if l.x+w > 24 {
		l.x, l.y, l.h = 0, l.y+l.h, 0
	}
	l.n++
	place(dashboard.GridPos{X: uint32(l.x), Y: uint32(l.y), W: uint32(w), H: uint32(h)})
	l.d.WithPanel(p)
	l.x += w
	l.h = max(l.h, h)
}

func (l *layout) newRow() {
	if l.x > 0 {
		l.x, l.y, l.h = 0, l.y+l.h, 0
	}
}

// Typed helpers: each sets the panel's id and position, then adds it.
func (l *layout) timeseries(p *timeseries.PanelBuilder, w, h int) {
	l.add(p, w, h, func(g dashboard.GridPos) { p.Id(uint32(l.n)).GridPos(g).Datasource(ds) })
}
func (l *layout) stat(p *stat.PanelBuilder, w, h int) {
	l.add(p, w, h, func(g dashboard.GridPos) { p.Id(uint32(l.n)).GridPos(g).Datasource(ds) })
}
func (l *layout) table(p *table.PanelBuilder, w, h int) {
	l.add(p, w, h, func(g dashboard.GridPos) { p.Id(uint32(l.n)).GridPos(g).Datasource(ds) })
}
func (l *layout) bargauge(p *bargauge.PanelBuilder, w, h int) {
	l.add(p, w, h, func(g dashboard.GridPos) { p.Id(uint32(l.n)).GridPos(g).Datasource(ds) })
}
func (l *layout) statetimeline(p *statetimeline.PanelBuilder, w, h int) {
	l.add(p, w, h, func(g dashboard.GridPos) { p.Id(uint32(l.n)).GridPos(g).Datasource(ds) })
}

// thresholds: a base colour, then (value, colour) pairs.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: ptr(steps[i].(float64)), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

var merge = dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}

func base(uid, title string, tags ...string) *dashboard.DashboardBuilder { //nolint:staticcheck // v1 dashboards, as above
	return dashboard.NewDashboardBuilder(title).Uid(uid).Tags(append([]string{"samdrift"}, tags...)). //nolint:staticcheck // v1 dashboards, as above
														Timezone(common.TimeZoneBrowser).Refresh("1m").Time("now-24h", "now").Readonly()
}

// build finishes a dashboard and fills in the fingerprint of its content.
func build(b *dashboard.DashboardBuilder) Dashboard { //nolint:staticcheck // v1 dashboards, as above
	d, err := b.Build()
	if err != nil {
		// The builders only fail on values this package wrote: a bug.
		panic(fmt.Sprintf("dashboards: %v", err))
	}
	out := Dashboard{Dashboard: d}
	raw, _ := json.Marshal(out)
	h := sha256.Sum256(raw)
	out.Samdrift = &Fingerprint{Generator: "samdrift", Hash: hex.EncodeToString(h[:12])}
	return out
}

// NOC is the operations center's overview of every agency and service.
func NOC(c *catalogue.Catalogue) Dashboard {
	d := base(NOCUID, "Samdrift NOC — "+c.Provider.Name, "noc").Refresh("30s").
		Description("Every agency and service: month-to-date availability against the objective, burn rate, open incidents, ingest health.")
	l := &layout{d: d}
	l.table(table.NewPanelBuilder().Title("SLA this month (calendar month, agency time zone)").
		Description("Month-to-date availability against the objective. Margin below zero: the objective is missed so far.").
		WithTarget(instantTable("MTD", `sla:availability:mtd`)).
		WithTarget(instantTable("Objective", `sla:objective`)).
		WithTarget(instantTable("Margin", `sla:availability:mtd - on(agency, service) group_left() sla:objective`)).
		WithTarget(instantTable("Budget", `sla:error_budget_remaining:month`)).
		Unit("percentunit").Decimals(3).Thresholds(thresholds("red", 0.0, "green")).
		WithTransformation(merge).ShowHeader(true).CellHeight(common.TableCellHeightSm), 12, 12)
	l.bargauge(bargauge.NewPanelBuilder().Title("Burn rate now (error ratio over 1h ÷ error budget rate)").
		Description("1 burns the monthly budget exactly by the month's end; 14.4 pages.").
		WithTarget(query(`(1 - sla:availability:ratio_rate1h) / on(agency, service) group_left() (1 - sla:objective)`).RefId("A").LegendFormat("{{agency}}/{{service}}").Instant()).
		Unit("none").Decimals(1).Min(0).Thresholds(thresholds("green", 1.0, "yellow", 6.0, "orange", 14.4, "red")).
		Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeGradient), 12, 12)
	l.bargauge(bargauge.NewPanelBuilder().Title("Open incidents by priority").
		WithTarget(query(`sum by (agency, priority) (samdrift_incident_open == 1)`).RefId("A").LegendFormat("{{agency}} {{priority}}").Instant()).
		Unit("none").Decimals(0).Thresholds(thresholds("blue", 1.0, "orange")).
		Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeBasic), 8, 10)
	l.table(table.NewPanelBuilder().Title("Ingest health per agency").
		Description("Share of scrape targets up and of probes succeeding, and the age of the newest sample.").
		WithTarget(instantTable("Targets up", `avg by (agency) (up)`)).
		WithTarget(instantTable("Probes OK", `avg by (agency) (probe_success{samdrift_origin="probe"})`)).
		WithTarget(instantTable("Newest sample age", `time() - max by (agency) (timestamp(up))`)).
		Decimals(2).WithTransformation(merge), 8, 10)
	l.table(table.NewPanelBuilder().Title("Firing alerts").
		WithTarget(instantTable("A", `count by (agency, alertname, severity) (ALERTS{alertstate="firing"})`)), 8, 10)
	l.newRow()
	l.timeseries(timeseries.NewPanelBuilder().Title("Availability (5m) per service").
		WithTarget(query(`sla:availability:ratio_rate5m`).RefId("A").LegendFormat("{{agency}}/{{service}}")).
		Unit("percentunit").Decimals(2), 24, 9)
	return build(d)
}

// Agency is one agency's SLA dashboard: every service's availability this
// month and in the months before against its objective, the error budget
// left, probe latency, incidents, and maintenance windows as annotations.
func Agency(c *catalogue.Catalogue, a *catalogue.Agency) Dashboard {
	d := base(AgencyUID(a.ID), "SLA — "+a.Name, "sla", "agency:"+a.ID).Time("now-30d", "now").
		Description(fmt.Sprintf("Availability of %s's services per calendar month (%s), planned maintenance excluded.", a.Name, a.Location())).
		Annotation(dashboard.NewAnnotationQueryBuilder().Name("Maintenance").Datasource(ds).Enable(true).
			Expr(`samdrift_maintenance == 1`).IconColor("rgba(120, 120, 220, 0.6)").Step("60s").
			TitleFormat("Planned maintenance").TextFormat("Excluded from the SLA")).
		Link(dashboard.NewDashboardLinkBuilder("All SLA dashboards").Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"sla"}).AsDropdown(true))
	l := &layout{d: d}
	for _, svc := range a.Services {
		sel := fmt.Sprintf(`{service=%q}`, svc.ID)
		if svc.SLA != nil {
			obj := svc.SLA.Availability / 100
			l.newRow()
			l.stat(stat.NewPanelBuilder().Title(fmt.Sprintf("%s — this month (objective %g %%)", svc.Name, svc.SLA.Availability)).
				WithTarget(query("sla:availability:mtd"+sel).RefId("A").Instant()).
				Unit("percentunit").Decimals(3).Thresholds(thresholds("red", obj, "green")).
				ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
				ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})), 6, 6)
			l.stat(stat.NewPanelBuilder().Title(svc.Name+" — error budget left this month").
				WithTarget(query("sla:error_budget_remaining:month"+sel).RefId("A").Instant()).
				Unit("percentunit").Decimals(1).Thresholds(thresholds("red", 0.0, "orange", 0.25, "green")).
				ColorMode(common.BigValueColorModeValue).GraphMode(common.BigValueGraphModeArea), 6, 6)
			l.timeseries(timeseries.NewPanelBuilder().Title(svc.Name+" — availability this month and the months before").
				Description("Month-to-date availability; its value at each month's end is that month's figure.").
				WithTarget(query("sla:availability:mtd"+sel).RefId("A").LegendFormat("month to date").Interval("1h")).
				WithTarget(query("sla:objective"+sel).RefId("B").LegendFormat("objective").Interval("1h")).
				Unit("percentunit").Decimals(3), 12, 6)
		}
		if svc.SLA != nil && svc.SLA.Latency != nil {
			lo := svc.SLA.Latency
			l.newRow()
			l.stat(stat.NewPanelBuilder().Title(fmt.Sprintf("%s — requests within %g ms this month (objective %g %%)", svc.Name, lo.Threshold*1000, lo.Objective)).
				WithTarget(query("sla:latency:mtd"+sel).RefId("A").Instant()).
				Unit("percentunit").Decimals(2).Thresholds(thresholds("red", lo.Objective/100, "green")).
				ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone), 6, 6)
			// Quantiles of the service's histogram: a native one, or else
			// its classic buckets.
			ts := timeseries.NewPanelBuilder().Title(svc.Name + " — request latency (from its histogram)").Unit("s")
			for i, q := range []string{"0.5", "0.9", "0.99"} {
				ts.WithTarget(query(fmt.Sprintf("histogram_quantile(%s, sum(rate(%s%s[5m]))) or histogram_quantile(%s, sum by (le) (rate(%s_bucket%s[5m])))",
					q, lo.Histogram, sel, q, lo.Histogram, sel)).RefId(string(rune('A' + i))).LegendFormat("p" + strings.TrimPrefix(q, "0.")))
			}
			l.timeseries(ts, 18, 6)
		}
		latency := "probe_duration_seconds" + sel
		if len(svc.Probes) == 0 {
			latency = "scrape_duration_seconds" + sel
		}
		l.timeseries(timeseries.NewPanelBuilder().Title(svc.Name+" — check latency").
			WithTarget(query(latency).RefId("A").LegendFormat("{{instance}}")).Unit("s"), 12, 6)
		l.statetimeline(statetimeline.NewPanelBuilder().Title(svc.Name+" — incidents").
			Description("Open (1) and resolved (0) incidents of the service: durations at a glance.").
			WithTarget(query("samdrift_incident_open"+sel).RefId("A").LegendFormat("{{incident}} {{priority}}")).
			Thresholds(thresholds("green", 1.0, "red")), 12, 6)
	}
	return build(d)
}

// All returns the NOC overview and the dashboards of every agency that
// accepts data, agency dashboards keyed by agency id.
func All(c *catalogue.Catalogue) (Dashboard, map[string]Dashboard) {
	out := map[string]Dashboard{}
	for _, a := range c.Agencies {
		if a.Phase.AcceptsData() {
			out[a.ID] = Agency(c, a)
		}
	}
	return NOC(c), out
}

// Expressions returns every PromQL expression of a dashboard (targets and
// annotations), for checking.
func Expressions(d Dashboard) []string {
	var out []string
	for _, q := range d.Queries() {
		out = append(out, q.Expr)
	}
	return slices.Compact(out)
}
