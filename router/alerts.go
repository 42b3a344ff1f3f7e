package router

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/nats-io/nats.go"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// routeAlerts assigns pushed alerts to agencies: an agency credential's
// alerts are that agency's (a sender's own agency label becomes
// exported_agency); the provider's Alertmanager, pushing with an ops
// credential, names the agency of each alert in its agency label.
func (r *Router) routeAlerts(ctx context.Context, cat *catalogue.Catalogue, src source, data []byte) ([]*nats.Msg, error) {
	var alerts []bus.Alert
	if err := json.Unmarshal(data, &alerts); err != nil {
		return nil, reject("undecodable", "alerts: %v", err)
	}
	byAgency := map[string][]bus.Alert{}
	for _, a := range alerts {
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		var ag *catalogue.Agency
		if src.provider {
			ag = cat.Agency(a.Labels["agency"])
			if ag == nil {
				r.metrics.rejected.WithLabelValues("unknown_agency").Inc()
				r.logger.Warn("dropping provider alert without a catalogue agency", "agency", a.Labels["agency"], "alertname", a.Labels["alertname"])
				continue
			}
		} else {
			ag = src.agency
			if v, ok := a.Labels["agency"]; ok && v != ag.ID {
				a.Labels["exported_agency"] = v
			}
			a.Labels["agency"] = ag.ID
		}
		if !ag.Phase.AcceptsData() {
			r.metrics.rejected.WithLabelValues("plan_phase").Inc()
			continue
		}
		byAgency[ag.ID] = append(byAgency[ag.ID], a)
	}
	ids := make([]string, 0, len(byAgency))
	for id := range byAgency {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	outs := make([]*nats.Msg, 0, len(ids))
	for _, id := range ids {
		b, err := json.Marshal(byAgency[id])
		if err != nil {
			return nil, err
		}
		out := &nats.Msg{Subject: bus.AgencySubject(id, bus.KindAlerts), Data: b, Header: nats.Header{}}
		bus.InjectTrace(ctx, out)
		outs = append(outs, out)
		r.metrics.batches.WithLabelValues(id, bus.KindAlerts).Inc()
	}
	return outs, nil
}
