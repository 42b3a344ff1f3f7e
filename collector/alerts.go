package collector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/router"
	"github.com/samdrift/samdrift/tenancy"
)

// Webhook is an Alertmanager webhook payload (version 4).
type Webhook struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a webhook payload.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// DecodeWebhook parses and checks an Alertmanager webhook payload. The
// error carries the HTTP status for the sender.
func DecodeWebhook(contentType string, body []byte, now time.Time, maxAlerts int) ([]bus.Alert, *httpError) {
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
			return nil, errorf(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: Alertmanager webhooks are application/json", contentType)
		}
	}
	var wh Webhook
	if err := json.Unmarshal(body, &wh); err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed webhook JSON: %v", err)
	}
	if wh.Version != "4" {
		return nil, errorf(http.StatusBadRequest, "unsupported webhook payload version %q: want \"4\"", wh.Version)
	}
	if len(wh.Alerts) == 0 {
		return nil, errorf(http.StatusBadRequest, "webhook payload without alerts")
	}
	if len(wh.Alerts) > maxAlerts {
		return nil, errorf(http.StatusRequestEntityTooLarge, "webhook payload has %d alerts, more than max_alerts_per_request (%d)", len(wh.Alerts), maxAlerts)
	}
	out := make([]bus.Alert, 0, len(wh.Alerts))
	for i, a := range wh.Alerts {
		switch {
		case a.Labels["alertname"] == "":
			return nil, errorf(http.StatusBadRequest, "alert %d has no alertname label", i)
		case a.StartsAt.IsZero():
			return nil, errorf(http.StatusBadRequest, "alert %d (%s) has no startsAt", i, a.Labels["alertname"])
		case a.StartsAt.After(now.Add(router.MaxSampleAhead)):
			return nil, errorf(http.StatusBadRequest, "alert %d (%s) starts in the future: %s", i, a.Labels["alertname"], a.StartsAt.Format(time.RFC3339))
		case a.Status != "firing" && a.Status != "resolved":
			return nil, errorf(http.StatusBadRequest, "alert %d (%s) has status %q: want firing or resolved", i, a.Labels["alertname"], a.Status)
		case a.Status == "resolved" && a.EndsAt.IsZero():
			return nil, errorf(http.StatusBadRequest, "resolved alert %d (%s) has no endsAt", i, a.Labels["alertname"])
		case !a.EndsAt.IsZero() && a.EndsAt.Before(a.StartsAt):
			return nil, errorf(http.StatusBadRequest, "alert %d (%s) ends before it starts", i, a.Labels["alertname"])
		}
		for k, v := range a.Labels {
			if k == "" || v == "" {
				return nil, errorf(http.StatusBadRequest, "alert %d (%s) has an empty label name or value", i, a.Labels["alertname"])
			}
		}
		ba := bus.Alert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, GeneratorURL: a.GeneratorURL}
		if a.Status == "resolved" {
			ba.EndsAt = a.EndsAt
		}
		out = append(out, ba)
	}
	return out, nil
}

// Alerts is the handler of POST /api/v1/alerts, the Alertmanager webhook
// receiver. An agency credential posts its own agency's alerts; the
// provider's Alertmanager posts with an ops credential, and each alert's
// agency label must name a catalogue agency. The answer is 2xx only once the
// alerts are stored in JetStream; 429 when an agency is over its
// alert_ingestion_rate; 5xx (never 4xx) for trouble that a retry can fix,
// so that Alertmanager retries.
func (p *Push) Alerts() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := tenancy.FromContext(r.Context())
		if !ok {
			writeError(w, errorf(http.StatusUnauthorized, "a valid bearer token is required"))
			return
		}
		if id.ReadOnly {
			writeError(w, errorf(http.StatusForbidden, "credential %q is read-only", id.Credential))
			return
		}
		cat := p.opts.Catalogue.Get()
		lim := cat.DefaultLimits()
		if id.Role == tenancy.RoleAgency {
			a := cat.Agency(id.Agency)
			if a == nil || !a.Phase.AcceptsData() {
				writeError(w, errorf(http.StatusForbidden, "agency %q accepts no alerts (phase plan)", id.Agency))
				return
			}
			lim = a.EffectiveLimits()
		}
		body, herr := p.readBody(w, r)
		if herr != nil {
			writeError(w, herr)
			return
		}
		alerts, herr := DecodeWebhook(r.Header.Get("Content-Type"), body, p.opts.Now(), lim.MaxAlertsPerRequest)
		if herr != nil {
			writeError(w, herr)
			return
		}
		if id.AllAgencies() {
			for i, a := range alerts {
				ag := cat.Agency(a.Labels[tenancy.Label])
				if ag == nil {
					writeError(w, errorf(http.StatusBadRequest, "alert %d (%s): a provider credential's alerts need an agency label naming a catalogue agency, got %q", i, a.Labels["alertname"], a.Labels[tenancy.Label]))
					return
				}
			}
		}
		if herr := p.publishAlerts(r.Context(), id.Credential, body, alerts); herr != nil {
			writeError(w, herr)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

func (p *Push) publishAlerts(ctx context.Context, cred string, raw []byte, alerts []bus.Alert) *httpError {
	ctx, span := p.tracer.Start(ctx, "collector.alerts", trace.WithAttributes(attribute.Int("alerts", len(alerts))))
	defer span.End()
	// The same payload posted twice by one sender is stored once.
	sum := sha256.Sum256(append([]byte(cred+"\x00"), raw...))
	id := "alerts-" + hex.EncodeToString(sum[:16])
	var v bus.Verdict
	if p.opts.Router != nil {
		v = p.opts.Router.IngestAlerts(ctx, cred, id, alerts)
	} else {
		data, err := json.Marshal(alerts)
		if err != nil {
			return errorf(http.StatusInternalServerError, "encode alerts: %v", err)
		}
		var herr *httpError
		v, herr = p.awaitVerdicts(ctx, bus.IngestSubject(bus.KindAlerts, bus.SourcePush, cred), [][]byte{data}, id, len(alerts))
		if herr != nil {
			p.metrics.requests.WithLabelValues("alertmanager", strconv.Itoa(herr.Code)).Inc()
			return herr
		}
	}
	p.metrics.requests.WithLabelValues("alertmanager", strconv.Itoa(v.Status)).Inc()
	if v.Status != http.StatusOK {
		return &httpError{Code: v.Status, Msg: v.Message, RetryAfter: v.RetryAfter}
	}
	return nil
}
