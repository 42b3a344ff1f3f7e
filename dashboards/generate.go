package dashboards

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/samdrift/samdrift/catalogue"
)

// DatasourceUID is the uid of Samdrift's data source in every Grafana
// organisation Samdrift provisions.
const DatasourceUID = "samdrift"

// NOCUID is the uid of the NOC overview.
const NOCUID = "samdrift-noc"

// AgencyUID is the uid of an agency's SLA dashboard.
func AgencyUID(agency string) string { return "samdrift-sla-" + agency }

var ds = &Datasource{Type: "prometheus", UID: DatasourceUID}

func ptr[T any](v T) *T { return &v }

// panels lays panels out left to right, wrapping at 24 columns.
type layout struct {
	panels []Panel
	x, y   int
	rowH   int
}

func (l *layout) add(p Panel, w, h int) {
	if l.x+w > 24 {
		l.x, l.y, l.rowH = 0, l.y+l.rowH, 0
	}
	p.ID = len(l.panels) + 1
	p.GridPos = GridPos{H: h, W: w, X: l.x, Y: l.y}
	if p.Datasource == nil {
		p.Datasource = ds
	}
	for i := range p.Targets {
		p.Targets[i].Datasource = ds
		if p.Targets[i].RefID == "" {
			p.Targets[i].RefID = string(rune('A' + i))
		}
	}
	l.panels = append(l.panels, p)
	l.x += w
	l.rowH = max(l.rowH, h)
}

func (l *layout) newRow() {
	if l.x > 0 {
		l.x, l.y, l.rowH = 0, l.y+l.rowH, 0
	}
}

func percent(decimals int) *FieldConfig {
	return &FieldConfig{Defaults: FieldDefaults{Unit: "percentunit", Decimals: ptr(decimals)}, Overrides: []any{}}
}

func thresholds(base string, steps ...any) *Thresholds {
	t := &Thresholds{Mode: "absolute", Steps: []Step{{Color: base}}}
	for i := 0; i+1 < len(steps); i += 2 {
		t.Steps = append(t.Steps, Step{Color: steps[i+1].(string), Value: ptr(steps[i].(float64))})
	}
	return t
}

func base(uid, title string, tags ...string) Dashboard {
	return Dashboard{
		UID: uid, Title: title, Tags: append([]string{"samdrift"}, tags...), Timezone: "browser",
		SchemaVersion: 39, Refresh: "1m", Time: TimeRange{From: "now-24h", To: "now"},
		Templating: Templating{List: []Variable{}}, Annotations: Annotations{List: []Annotation{}},
	}
}

// seal fills in the fingerprint of the dashboard's content.
func seal(d Dashboard) Dashboard {
	d.Samdrift = nil
	b, _ := json.Marshal(d)
	h := sha256.Sum256(b)
	d.Samdrift = &Fingerprint{Generator: "samdrift", Hash: hex.EncodeToString(h[:12])}
	return d
}

// NOC is the operations center's overview of every agency and service.
func NOC(c *catalogue.Catalogue) Dashboard {
	d := base(NOCUID, "Samdrift NOC — "+c.Provider.Name, "noc")
	d.Description = "Every agency and service: month-to-date availability against the objective, burn rate, open incidents, ingest health."
	d.Refresh = "30s"
	l := &layout{}
	l.add(Panel{
		Type: "table", Title: "SLA this month (calendar month, agency time zone)",
		Description: "Month-to-date availability against the objective. Margin below zero: the objective is missed so far.",
		Targets: []Target{
			{RefID: "MTD", Expr: `sla:availability:mtd`, Instant: true, Format: "table"},
			{RefID: "Objective", Expr: `sla:objective`, Instant: true, Format: "table"},
			{RefID: "Margin", Expr: `sla:availability:mtd - on(agency, service) group_left() sla:objective`, Instant: true, Format: "table"},
			{RefID: "Budget", Expr: `sla:error_budget_remaining:month`, Instant: true, Format: "table"},
		},
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "percentunit", Decimals: ptr(3),
			Thresholds: thresholds("red", 0.0, "green")}, Overrides: []any{}},
		Transformations: []any{map[string]any{"id": "merge", "options": map[string]any{}}},
		Options:         map[string]any{"showHeader": true, "cellHeight": "sm"},
	}, 12, 12)
	l.add(Panel{
		Type: "bargauge", Title: "Burn rate now (error ratio over 1h ÷ error budget rate)",
		Description: "1 burns the monthly budget exactly by the month's end; 14.4 pages.",
		Targets:     []Target{{Expr: `(1 - sla:availability:ratio_rate1h) / on(agency, service) group_left() (1 - sla:objective)`, LegendFormat: "{{agency}}/{{service}}", Instant: true}},
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "none", Decimals: ptr(1), Min: ptr(0.0),
			Thresholds: thresholds("green", 1.0, "yellow", 6.0, "orange", 14.4, "red")}, Overrides: []any{}},
		Options: map[string]any{"orientation": "horizontal", "displayMode": "gradient"},
	}, 12, 12)
	l.add(Panel{
		Type: "bargauge", Title: "Open incidents by priority",
		Targets: []Target{{Expr: `sum by (agency, priority) (samdrift_incident_open == 1)`, LegendFormat: "{{agency}} {{priority}}", Instant: true}},
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "none", Decimals: ptr(0),
			Thresholds: thresholds("blue", 1.0, "orange")}, Overrides: []any{}},
		Options: map[string]any{"orientation": "horizontal", "displayMode": "basic"},
	}, 8, 10)
	l.add(Panel{
		Type: "table", Title: "Ingest health per agency",
		Description: "Share of scrape targets up and of probes succeeding, and the age of the newest sample.",
		Targets: []Target{
			{RefID: "Targets up", Expr: `avg by (agency) (up)`, Instant: true, Format: "table"},
			{RefID: "Probes OK", Expr: `avg by (agency) (probe_success{samdrift_origin="probe"})`, Instant: true, Format: "table"},
			{RefID: "Newest sample age", Expr: `time() - max by (agency) (timestamp(up))`, Instant: true, Format: "table"},
		},
		FieldConfig:     &FieldConfig{Defaults: FieldDefaults{Decimals: ptr(2)}, Overrides: []any{}},
		Transformations: []any{map[string]any{"id": "merge", "options": map[string]any{}}},
	}, 8, 10)
	l.add(Panel{
		Type: "table", Title: "Firing alerts",
		Targets: []Target{{Expr: `count by (agency, alertname, severity) (ALERTS{alertstate="firing"})`, Instant: true, Format: "table"}},
	}, 8, 10)
	l.newRow()
	l.add(Panel{
		Type: "timeseries", Title: "Availability (5m) per service",
		Targets:     []Target{{Expr: `sla:availability:ratio_rate5m`, LegendFormat: "{{agency}}/{{service}}"}},
		FieldConfig: percent(2),
	}, 24, 9)
	d.Panels = l.panels
	return seal(d)
}

// Agency is one agency's SLA dashboard: every service's availability this
// month and in the months before against its objective, the error budget
// left, probe latency, incidents, and maintenance windows as annotations.
func Agency(c *catalogue.Catalogue, a *catalogue.Agency) Dashboard {
	d := base(AgencyUID(a.ID), "SLA — "+a.Name, "sla", "agency:"+a.ID)
	d.Description = fmt.Sprintf("Availability of %s's services per calendar month (%s), planned maintenance excluded.", a.Name, a.Location())
	d.Time = TimeRange{From: "now-30d", To: "now"}
	d.Annotations.List = append(d.Annotations.List, Annotation{
		Name: "Maintenance", Datasource: ds, Enable: true, Expr: `samdrift_maintenance == 1`, IconColor: "rgba(120, 120, 220, 0.6)",
		Step: "60s", TitleFormat: "Planned maintenance", TextFormat: "Excluded from the SLA",
	})
	l := &layout{}
	for _, svc := range a.Services {
		sel := fmt.Sprintf(`{service=%q}`, svc.ID)
		if svc.SLA != nil {
			obj := svc.SLA.Availability / 100
			l.newRow()
			l.add(Panel{
				Type: "stat", Title: fmt.Sprintf("%s — this month (objective %g %%)", svc.Name, svc.SLA.Availability),
				Targets:     []Target{{Expr: "sla:availability:mtd" + sel, Instant: true}},
				FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "percentunit", Decimals: ptr(3), Thresholds: thresholds("red", obj, "green")}, Overrides: []any{}},
				Options:     map[string]any{"colorMode": "background", "graphMode": "none", "reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}}},
			}, 6, 6)
			l.add(Panel{
				Type: "stat", Title: svc.Name + " — error budget left this month",
				Targets:     []Target{{Expr: "sla:error_budget_remaining:month" + sel, Instant: true}},
				FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "percentunit", Decimals: ptr(1), Thresholds: thresholds("red", 0.0, "orange", 0.25, "green")}, Overrides: []any{}},
				Options:     map[string]any{"colorMode": "value", "graphMode": "area"},
			}, 6, 6)
			l.add(Panel{
				Type: "timeseries", Title: svc.Name + " — availability this month and the months before",
				Description: "Month-to-date availability; its value at each month's end is that month's figure.",
				Targets: []Target{
					{Expr: "sla:availability:mtd" + sel, LegendFormat: "month to date", Interval: "1h"},
					{Expr: "sla:objective" + sel, LegendFormat: "objective", Interval: "1h"},
				},
				FieldConfig: percent(3),
			}, 12, 6)
		}
		latency := "probe_duration_seconds" + sel
		if len(svc.Probes) == 0 {
			latency = "scrape_duration_seconds" + sel
		}
		l.add(Panel{
			Type: "timeseries", Title: svc.Name + " — check latency",
			Targets:     []Target{{Expr: latency, LegendFormat: "{{instance}}"}},
			FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "s"}, Overrides: []any{}},
		}, 12, 6)
		l.add(Panel{
			Type: "state-timeline", Title: svc.Name + " — incidents",
			Description: "Open (1) and resolved (0) incidents of the service: durations at a glance.",
			Targets:     []Target{{Expr: "samdrift_incident_open" + sel, LegendFormat: "{{incident}} {{priority}}"}},
			FieldConfig: &FieldConfig{Defaults: FieldDefaults{Thresholds: thresholds("green", 1.0, "red")}, Overrides: []any{}},
		}, 12, 6)
	}
	d.Panels = l.panels
	d.Links = []Link{{Title: "All SLA dashboards", Type: "dashboards", Tags: []string{"sla"}, AsDropdown: true}}
	return seal(d)
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
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, t.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		out = append(out, a.Expr)
	}
	return slices.Compact(out)
}
