package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// maxAlertsPerMessage bounds one message on agency.<id>.alerts, and so what
// one message costs the incident engine.
const maxAlertsPerMessage = 500

// IngestAlerts routes alerts pushed to a receiver in this process (an
// agency's or the provider's Alertmanager): the sender authenticated as
// credential. They are assigned to agencies, limited per agency, and stored
// on the agencies' alert subjects before the verdict returns. id makes the
// messages' de-duplication ids (the same payload posted twice is stored
// once).
func (r *Router) IngestAlerts(ctx context.Context, credential, id string, alerts []bus.Alert) bus.Verdict {
	cat := r.opts.Catalogue.Get()
	src, err := resolve(cat, []string{bus.SourcePush, credential}, bus.KindAlerts)
	if err != nil {
		return bus.Verdict{Status: http.StatusForbidden, Message: err.Error()}
	}
	msgs, o := r.assignAlerts(ctx, cat, src, alerts, true)
	if len(msgs) > 0 {
		ids := make([]string, len(msgs))
		for i := range msgs {
			ids[i] = id + "-" + strconv.Itoa(i)
		}
		pctx, cancel := context.WithTimeout(ctx, PublishTimeout)
		err := r.opts.Bus.PublishAll(pctx, msgs, ids)
		cancel()
		if err != nil {
			r.logger.Warn("alerts not stored: bus unavailable", "err", err)
			return bus.Verdict{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
				Message: "alerts not stored, message bus unavailable; retry"}
		}
	}
	return o.verdict()
}

// routeAlerts is IngestAlerts for a message on INGEST.
func (r *Router) routeAlerts(ctx context.Context, cat *catalogue.Catalogue, src source, data []byte, o *outcome, limited bool) ([]*nats.Msg, error) {
	var alerts []bus.Alert
	if err := json.Unmarshal(data, &alerts); err != nil {
		return nil, poison("undecodable", "alerts: %v", err)
	}
	msgs, out := r.assignAlerts(ctx, cat, src, alerts, limited)
	*o = out
	return msgs, nil
}

// assignAlerts decides each alert's agency: an agency credential's alerts
// are that agency's (a sender's own agency label becomes exported_agency);
// the provider's Alertmanager, pushing with an ops credential, names the
// agency of each alert in its agency label. Each agency's alerts pass its
// alert_ingestion_rate; what passes is cut into messages of at most
// maxAlertsPerMessage alerts. Unless limited, the rate is not applied.
func (r *Router) assignAlerts(ctx context.Context, cat *catalogue.Catalogue, src source, alerts []bus.Alert, limited bool) ([]*nats.Msg, outcome) {
	var o outcome
	byAgency := map[string][]bus.Alert{}
	for _, a := range alerts {
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		var ag *catalogue.Agency
		if src.provider {
			ag = cat.Agency(a.Labels[tenancy.Label])
			if ag == nil {
				r.metrics.rejected.WithLabelValues("unknown_agency").Inc()
				r.logger.Warn("dropping provider alert without a catalogue agency", "agency", a.Labels[tenancy.Label], "alertname", a.Labels["alertname"])
				continue
			}
		} else {
			ag = src.agency
			if v, ok := a.Labels[tenancy.Label]; ok && v != ag.ID {
				a.Labels["exported_"+tenancy.Label] = v
			}
			a.Labels[tenancy.Label] = ag.ID
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
	var msgs []*nats.Msg
	for _, id := range ids {
		as := byAgency[id]
		if ok, after := r.limiter.admitAlerts(cat.Agency(id), len(as)); limited && !ok {
			r.metrics.discarded.WithLabelValues(id, ReasonAlertRateLimited).Add(float64(len(as)))
			lim := cat.Agency(id).EffectiveLimits()
			if o.status < http.StatusTooManyRequests {
				o.status = http.StatusTooManyRequests
				o.message = fmt.Sprintf("agency %q is over its alert_ingestion_rate of %g alerts/s (burst %d): %d alerts refused; retry later", id, lim.AlertIngestionRate, lim.AlertIngestionBurstSize, len(as))
				o.retryAfter = after
			}
			continue
		}
		o.accepted += len(as)
		for start := 0; start < len(as); start += maxAlertsPerMessage {
			b, err := json.Marshal(as[start:min(start+maxAlertsPerMessage, len(as))])
			if err != nil {
				continue
			}
			out := &nats.Msg{Subject: bus.AgencySubject(id, bus.KindAlerts), Data: b, Header: nats.Header{}}
			bus.InjectTrace(ctx, out)
			msgs = append(msgs, out)
			r.metrics.batches.WithLabelValues(id, bus.KindAlerts).Inc()
		}
	}
	return msgs, o
}
