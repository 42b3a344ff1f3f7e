package builtin

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/ticketing"
)

// SeriesName is the series that puts incidents on dashboards:
// samdrift_incident_open{agency, service, incident, alertname, priority}
// is 1 while the incident is open and 0 for a while after it resolved.
const SeriesName = "samdrift_incident_open"

// seriesAfterResolve is how long a resolved incident keeps its 0.
const seriesAfterResolve = 2 * time.Hour

// IncidentSeries returns the incident series of one agency at now.
func IncidentSeries(recs []Record, agency string, now time.Time) []Sample {
	var out []Sample
	for _, r := range recs {
		if r.Agency != agency {
			continue
		}
		v := 0.0
		switch {
		case r.State == ticketing.StateOpen:
			v = 1
		case now.Sub(r.ResolvedAt) > seriesAfterResolve:
			continue
		}
		out = append(out, Sample{
			Labels: labels.FromStrings("__name__", SeriesName, "agency", r.Agency, "service", r.Service,
				"incident", r.ID, "alertname", r.AlertName, "priority", r.Priority),
			Value: v,
		})
	}
	return out
}

// Sample is one value of a series.
type Sample struct {
	Labels labels.Labels
	Value  float64
}

// WriteSeries appends the agency's incident series at now.
func (s *Store) WriteSeries(ctx context.Context, app storage.Appender, agency string, now time.Time) error {
	recs, err := s.List(ctx, Filter{Agencies: []string{agency}})
	if err != nil {
		return err
	}
	for _, smp := range IncidentSeries(recs, agency, now) {
		if _, err := app.Append(0, smp.Labels, now.UnixMilli(), smp.Value); err != nil &&
			!errors.Is(err, storage.ErrOutOfOrderSample) && !errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
			return err
		}
	}
	return nil
}
