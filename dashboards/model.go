package dashboards

import (
	"encoding/json"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Dashboard is a Grafana dashboard built with Grafana's own typed builders
// (github.com/grafana/grafana-foundation-sdk), with Samdrift's fingerprint
// beside Grafana's model.
type Dashboard struct {
	dashboard.Dashboard
	Samdrift *Fingerprint
}

// Fingerprint marks a dashboard as Samdrift's and records what generated it,
// so that provisioning can tell whether Grafana's copy is current.
type Fingerprint struct {
	Generator string `json:"generator"`
	Hash      string `json:"hash"`
}

// MarshalJSON writes Grafana's dashboard JSON with a "samdrift" key.
func (d Dashboard) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(d.Dashboard)
	if err != nil || d.Samdrift == nil {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	fp, err := json.Marshal(d.Samdrift)
	if err != nil {
		return nil, err
	}
	m["samdrift"] = fp
	return json.Marshal(m)
}

// UID is the dashboard's uid.
func (d Dashboard) UID() string {
	if d.Uid == nil {
		return ""
	}
	return *d.Uid
}

// Query is one PromQL query of a dashboard: a panel's target or an
// annotation.
type Query struct {
	Panel string // the panel's title, or "annotation <name>"
	Expr  string
}

// Queries returns every PromQL query of the dashboard, in order.
func (d Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		title := ""
		if p.Panel.Title != nil {
			title = *p.Panel.Title
		}
		for _, t := range p.Panel.Targets {
			switch q := t.(type) {
			case prometheus.Dataquery:
				out = append(out, Query{Panel: title, Expr: q.Expr})
			case *prometheus.Dataquery:
				out = append(out, Query{Panel: title, Expr: q.Expr})
			}
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != nil {
			out = append(out, Query{Panel: "annotation " + a.Name, Expr: *a.Expr})
		}
	}
	return out
}
