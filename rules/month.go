package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// MonthFigure is a service's SLA figure for one calendar month.
type MonthFigure struct {
	Service   string  `json:"service"`
	Name      string  `json:"name"`
	Tier      string  `json:"tier"`
	Objective float64 `json:"objective"` // ratio, 0.995
	// Good and Counted are the month's good and counted slots.
	Good    float64 `json:"good_slots"`
	Counted float64 `json:"counted_slots"`
	// Availability is Good/Counted; NaN (and HasData false) without data.
	Availability float64 `json:"availability"`
	HasData      bool    `json:"has_data"`
	// DownSeconds is the counted time the service was down; ScopeSeconds the
	// month's counted time (service hours, maintenance excluded).
	DownSeconds  float64 `json:"down_seconds"`
	ScopeSeconds float64 `json:"scope_seconds"`
	// BudgetUsed is DownSeconds over the month's error budget
	// ((1 - objective) × ScopeSeconds); above 1 the budget is overspent.
	BudgetUsed float64 `json:"budget_used"`
	Met        bool    `json:"met"`
	// Latency is the month's latency figure, for a service with a latency
	// objective.
	Latency *LatencyFigure `json:"latency,omitempty"`
}

// LatencyFigure is a service's latency objective over a month: Good of
// Total requests (in service hours, outside maintenance) were answered
// within ThresholdSeconds.
type LatencyFigure struct {
	Objective        float64 `json:"objective"` // ratio, 0.98
	ThresholdSeconds float64 `json:"threshold_seconds"`
	Good             float64 `json:"good_requests"`
	Total            float64 `json:"total_requests"`
	Ratio            float64 `json:"ratio"` // NaN without requests
	HasData          bool    `json:"has_data"`
	// BudgetUsed is the slow requests over the month's allowance so far
	// ((1 - objective) × Total).
	BudgetUsed float64 `json:"budget_used"`
	Met        bool    `json:"met"`
}

// MarshalJSON writes a missing ratio as null.
func (f LatencyFigure) MarshalJSON() ([]byte, error) {
	type plain LatencyFigure
	out := struct {
		plain
		Ratio *float64 `json:"ratio"`
	}{plain: plain(f)}
	if !math.IsNaN(f.Ratio) {
		out.Ratio = &f.Ratio
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads a null ratio back as NaN.
func (f *LatencyFigure) UnmarshalJSON(b []byte) error {
	type plain LatencyFigure
	var in struct {
		plain
		Ratio *float64 `json:"ratio"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*f = LatencyFigure(in.plain)
	f.Ratio = math.NaN()
	if in.Ratio != nil {
		f.Ratio = *in.Ratio
	}
	return nil
}

// MarshalJSON writes a missing availability as null (JSON has no NaN).
func (f MonthFigure) MarshalJSON() ([]byte, error) {
	type plain MonthFigure
	out := struct {
		plain
		Availability *float64 `json:"availability"`
	}{plain: plain(f)}
	if !math.IsNaN(f.Availability) {
		out.Availability = &f.Availability
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads a null availability back as NaN.
func (f *MonthFigure) UnmarshalJSON(b []byte) error {
	type plain MonthFigure
	var in struct {
		plain
		Availability *float64 `json:"availability"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*f = MonthFigure(in.plain)
	f.Availability = math.NaN()
	if in.Availability != nil {
		f.Availability = *in.Availability
	}
	return nil
}

// MonthBounds returns the start and end of a calendar month ("2006-01") in loc.
func MonthBounds(month string, loc *time.Location) (time.Time, time.Time, error) {
	t, err := time.ParseInLocation("2006-01", month, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("month %q: want YYYY-MM", month)
	}
	return t, t.AddDate(0, 1, 0), nil
}

// Month computes an agency's SLA figures for a calendar month from the
// 5-minute aggregates the SLA rules record (which carry the month), as the
// figures stand at now (or after the month, once its last aggregates are
// written). q must answer for the agency.
func Month(ctx context.Context, engine promql.QueryEngine, q storage.Queryable, c *catalogue.Catalogue, a *catalogue.Agency, month string, now time.Time) ([]MonthFigure, error) {
	start, end, err := MonthBounds(month, a.Location())
	if err != nil {
		return nil, err
	}
	at := end.Add(10 * time.Minute) // the month's last aggregates are written by then
	if now.Before(at) {
		at = now
	}
	if at.Before(start) {
		return nil, fmt.Errorf("month %s has not begun", month)
	}
	sum := func(metric string) (map[string]float64, error) {
		// The agency's matcher on every selector: whoever asks, and
		// whatever else the queryable holds, only this agency's own
		// aggregates make its figures.
		expr, err := tenancy.Scope(fmt.Sprintf(`sum by (service) (sum_over_time(%s{month=%q}[32d]))`, metric, month), a.ID)
		if err != nil {
			return nil, err
		}
		qry, err := engine.NewInstantQuery(ctx, q, nil, expr, at)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		v, err := res.Vector()
		if err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for _, s := range v {
			out[s.Metric.Get("service")] = s.F
		}
		return out, nil
	}
	good, err := sum("sla:slot:good_sum5m")
	if err != nil {
		return nil, err
	}
	counted, err := sum("sla:slot:count5m")
	if err != nil {
		return nil, err
	}
	var latGood, latTotal map[string]float64
	for _, svc := range a.Services {
		if svc.SLA != nil && svc.SLA.Latency != nil {
			if latGood, err = sum("sla:latency:good5m"); err != nil {
				return nil, err
			}
			if latTotal, err = sum("sla:latency:total5m"); err != nil {
				return nil, err
			}
			break
		}
	}
	slot := time.Duration(c.Defaults.EvaluationInterval).Seconds()
	var out []MonthFigure
	for _, svc := range a.Services {
		if svc.SLA == nil {
			continue
		}
		f := MonthFigure{Service: svc.ID, Name: svc.Name, Tier: svc.Tier, Objective: svc.SLA.Availability / 100,
			Good: good[svc.ID], Counted: counted[svc.ID], Availability: math.NaN()}
		f.ScopeSeconds = MonthScopeSeconds(a, svc, start)
		if f.Counted > 0 {
			f.HasData = true
			f.Availability = f.Good / f.Counted
			f.DownSeconds = (f.Counted - f.Good) * slot
			if budget := (1 - f.Objective) * f.ScopeSeconds; budget > 0 {
				f.BudgetUsed = f.DownSeconds / budget
			}
			f.Met = f.Availability >= f.Objective
		}
		if l := svc.SLA.Latency; l != nil {
			lf := &LatencyFigure{Objective: l.Objective / 100, ThresholdSeconds: l.Threshold,
				Good: latGood[svc.ID], Total: latTotal[svc.ID], Ratio: math.NaN()}
			if lf.Total > 0 {
				lf.HasData = true
				lf.Ratio = lf.Good / lf.Total
				lf.BudgetUsed = (lf.Total - lf.Good) / ((1 - lf.Objective) * lf.Total)
				lf.Met = lf.Ratio >= lf.Objective
			}
			f.Latency = lf
		}
		out = append(out, f)
	}
	return out, nil
}
