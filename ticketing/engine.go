package ticketing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// How long the state of a key is kept after its last change.
const (
	stateRetention     = 7 * 24 * time.Hour
	tombstoneRetention = 24 * time.Hour
)

// Durable is the name of the ticketing replicas' shared consumer of
// agency.*.alerts.
const Durable = "ticketing"

// Options configure the incident engine.
type Options struct {
	Bus        *bus.Bus
	Catalogue  *catalogue.Holder
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	Now        func() time.Time
	// SweepInterval is how often open incidents are checked for expired
	// alerts and quiet flapping.
	SweepInterval time.Duration
	// Meter counts incidents per agency (optional).
	Meter interface {
		Add(agency, kind string, n float64)
	}
	// Workers bounds the agencies whose alerts are processed at once
	// (default 8).
	Workers int
}

// Engine turns alerts into incidents.
type Engine struct {
	opts    Options
	logger  *slog.Logger
	tracer  trace.Tracer
	state   jetstream.KeyValue
	metrics *metrics
	// workers bounds the agencies whose alerts are processed at once.
	workers chan struct{}

	mu         sync.Mutex
	deliveries []DeliveryOptions // every backend's consumers exist for every agency
}

// New opens the incident state bucket.
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = 30 * time.Second
	}
	kv, err := o.Bus.KeyValue(ctx, bus.BucketIncidentState, 1)
	if err != nil {
		return nil, err
	}
	if o.Workers == 0 {
		o.Workers = 8
	}
	return &Engine{
		opts: o, logger: o.Logger, tracer: o.Tracer.Tracer("github.com/samdrift/samdrift/ticketing"),
		state: kv, metrics: newMetrics(o.Registerer), workers: make(chan struct{}, o.Workers),
	}, nil
}

// maxDeliveries bounds how often one message of alerts is tried: past it,
// the message goes to the agency's dead letters and the stream moves on.
const maxDeliveries = 10

// alertsSpec is the engine replicas' shared consumer of one agency's
// alerts: every agency has its own, so that one agency's flood never
// queues another's alerts behind it.
func alertsSpec(agency string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Stream: bus.StreamAlerts, Durable: Durable + "-" + agency, Filter: bus.AgencySubject(agency, bus.KindAlerts),
		// A crashed replica's messages come back after this; a message
		// being processed reports progress meanwhile.
		AckWait:       15 * time.Second,
		MaxAckPending: 16,
	}
}

// Run consumes every agency's alerts and sweeps open incidents until ctx
// ends. Before an agency's first alert is processed, every backend's
// outbox consumer for it exists.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(e.opts.SweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.Sweep(ctx); err != nil && ctx.Err() == nil {
					e.logger.Warn("sweep incidents", "err", err)
				}
			}
		}
	})
	defer wg.Wait()
	return e.perAgency(ctx, "incident engine", func(ctx context.Context, agency string) {
		if err := e.ensureDeliveries(ctx, agency); err != nil {
			e.logger.Error("delivery consumers of a new agency", "agency", agency, "err", err)
			return
		}
		err := e.opts.Bus.Consume(ctx, alertsSpec(agency), 1, e.logger, func(ctx context.Context, batch []jetstream.Msg) {
			for _, m := range batch {
				select {
				case e.workers <- struct{}{}:
				case <-ctx.Done():
					return
				}
				e.handle(ctx, m)
				<-e.workers
			}
		})
		if err != nil && ctx.Err() == nil {
			e.logger.Error("alerts consumer", "agency", agency, "err", err)
		}
	})
}

// perAgency runs f for every agency of the catalogue, each in its own
// goroutine, starting it for agencies added and stopping it for agencies
// removed, until ctx ends.
func (e *Engine) perAgency(ctx context.Context, what string, f func(ctx context.Context, agency string)) error {
	type worker struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	running := map[string]worker{}
	var wg sync.WaitGroup
	defer func() {
		for _, w := range running {
			w.cancel()
		}
		wg.Wait()
	}()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		want := map[string]bool{}
		for _, a := range incidentAgencies(e.opts.Catalogue.Get()) {
			want[a.ID] = true
			w, ok := running[a.ID]
			if ok {
				select {
				case <-w.done:
					// It gave up (the bus was away): start it again.
					e.logger.Warn("restarting", "worker", what, "agency", a.ID)
					ok = false
				default:
				}
			}
			if !ok {
				actx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				running[a.ID] = worker{cancel, done}
				wg.Go(func() { defer close(done); f(actx, a.ID) })
			}
		}
		for id, w := range running {
			if !want[id] {
				w.cancel()
				delete(running, id)
				e.logger.Info("stopped for an agency no longer in the catalogue", "worker", what, "agency", id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// handle processes one message of alerts; it is acked only when every
// alert's incident state and outbox entry are stored. A message that
// cannot be decoded, or is still not processed after maxDeliveries tries,
// goes to the agency's dead letters.
func (e *Engine) handle(ctx context.Context, m jetstream.Msg) {
	agency, kind, ok := bus.ParseAgencySubject(m.Subject())
	if !ok || kind != bus.KindAlerts {
		_ = m.Term()
		return
	}
	var alerts []bus.Alert
	if err := json.Unmarshal(m.Data(), &alerts); err != nil {
		e.logger.Error("undecodable alerts moved to the dead letters", "agency", agency, "err", err)
		e.metrics.skipped.WithLabelValues(agency, "undecodable").Inc()
		e.deadLetter(ctx, agency, m, "undecodable alerts: "+err.Error())
		return
	}
	ctx, span := e.tracer.Start(bus.ExtractTrace(ctx, m.Headers()), "ticketing.process",
		trace.WithAttributes(attribute.String("agency", agency), attribute.Int("alerts", len(alerts))))
	defer span.End()
	// A message of many alerts takes a while: its progress keeps it ours.
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	if err := e.Process(ctx, agency, alerts); err != nil {
		if bus.Deliveries(m) >= maxDeliveries {
			e.logger.Error("alerts not processed after retries; moved to the dead letters", "agency", agency, "err", err)
			e.deadLetter(ctx, agency, m, fmt.Sprintf("not processed after %d tries: %v", maxDeliveries, err))
			return
		}
		e.logger.Warn("alerts not processed, will retry", "agency", agency, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	_ = m.Ack()
}

func (e *Engine) deadLetter(ctx context.Context, agency string, m jetstream.Msg, reason string) {
	if err := e.opts.Bus.MoveToDeadLetter(ctx, agency, bus.StageTicketing, reason, m); err != nil {
		e.logger.Error("dead letter not stored; will retry", "agency", agency, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	_ = m.Term()
}

// keyParallelism bounds the incident keys of one message worked on at once.
const keyParallelism = 16

// Process applies alerts of one agency to their incidents. Alerts of one key
// are applied in order and folded into as few state changes as the
// incident's identity allows; different keys proceed in parallel. A message
// of 10,000 alerts of ten keys costs ten state changes, not 10,000.
func (e *Engine) Process(ctx context.Context, agency string, alerts []bus.Alert) error {
	cat := e.opts.Catalogue.Get()
	type keyAlerts struct {
		t      Target
		alerts []bus.Alert
	}
	var keys []*keyAlerts
	byKey := map[string]*keyAlerts{}
	for _, a := range alerts {
		t, reason := TargetFor(cat, agency, a)
		if reason != "" {
			e.metrics.skipped.WithLabelValues(agency, reason).Inc()
			if reason == "maintenance" {
				e.logger.Info("no incident: alert raised in a maintenance window", "agency", agency, "alert", describeAlert(a))
			}
			continue
		}
		k := byKey[t.StoredKey]
		if k == nil {
			k = &keyAlerts{t: t}
			byKey[t.StoredKey] = k
			keys = append(keys, k)
		}
		k.alerts = append(k.alerts, a)
	}
	if len(keys) == 1 {
		return e.applyAll(ctx, keys[0].t, keys[0].alerts)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(keyParallelism)
	for _, k := range keys {
		g.Go(func() error { return e.applyAll(gctx, k.t, k.alerts) })
	}
	return g.Wait()
}

// applyAll applies the alerts of one key, in order, folding consecutive
// alerts into one state change as long as they change the same incident.
func (e *Engine) applyAll(ctx context.Context, t Target, alerts []bus.Alert) error {
	for len(alerts) > 0 {
		used := 0
		err := e.apply(ctx, t, func(cur *Incident, now time.Time) (*Incident, Change) {
			inc, change := cur, Unchanged
			used = 0
			for _, a := range alerts {
				next, ch := Apply(inc, a, t, now)
				if used > 0 && next != nil && inc != nil && next.ID != inc.ID {
					break // another incident begins: store this one first
				}
				inc, change = next, max(change, ch)
				used++
			}
			return inc, change
		})
		if err != nil {
			return err
		}
		alerts = alerts[used:]
	}
	return nil
}

// apply runs one state change with compare-and-set: two replicas applying
// alerts of one key at once retry on conflict, so a key never gets two
// incidents. It then makes sure the stored version is in the outbox.
func (e *Engine) apply(ctx context.Context, t Target, f func(*Incident, time.Time) (*Incident, Change)) error {
	for attempt := 0; ; attempt++ {
		cur, rev, err := e.load(ctx, t.StoredKey)
		if err != nil {
			return err
		}
		next, change := f(cur, e.opts.Now())
		opened := false
		if change == Unchanged {
			// Nothing new, but a crash may have cut off the outbox entry of
			// the stored version: hand it over again (de-duplicated).
			if cur != nil && cur.Enqueued < cur.Version {
				return e.enqueue(ctx, t.StoredKey, cur, rev)
			}
			return nil
		}
		if change == Changed {
			if cur != nil && cur.ID == next.ID {
				next.Version = cur.Version + 1
			} else {
				next.Version = 1
				opened = true
				e.link(ctx, next)
			}
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = e.state.Create(ctx, t.StoredKey, b)
		} else {
			newRev, err = e.state.Update(ctx, t.StoredKey, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			e.metrics.conflicts.Inc()
			if attempt > 50 {
				return fmt.Errorf("incident %s: too many concurrent updates", t.Key)
			}
			continue // another replica got there first: apply to its result
		}
		if err != nil {
			return fmt.Errorf("store incident %s: %w", t.Key, err)
		}
		if opened {
			e.metrics.opened.WithLabelValues(next.Agency, next.Queue).Inc()
			if e.opts.Meter != nil && next.Agency != catalogue.ProviderID {
				e.opts.Meter.Add(next.Agency, "incidents", 1) // the provider's own are not an agency's usage
			}
		}
		if next.Enqueued < next.Version {
			return e.enqueue(ctx, t.StoredKey, next, newRev)
		}
		return nil
	}
}

// LinkWindow is how far apart a provider incident and an agency's
// incident may open for the one to explain the other.
const LinkWindow = 15 * time.Minute

// link relates a new incident to the provider's: a provider incident
// explains the agencies' incidents open and opened within LinkWindow of
// it; an agency's incident opened while a provider incident (opened
// within LinkWindow) is open is explained by it. Storms of agency
// incidents thus group under their provider-wide cause.
func (e *Engine) link(ctx context.Context, inc *Incident) {
	if e.opts.Catalogue.Get().ProviderAgency() == nil {
		return
	}
	filter := catalogue.ProviderID + ".>"
	if inc.Agency == catalogue.ProviderID {
		filter = ">"
	}
	lister, err := e.state.ListKeysFiltered(ctx, filter)
	if err != nil {
		return
	}
	var explains []string
	for k := range lister.Keys() {
		other, _, err := e.load(ctx, k)
		if err != nil || other == nil || other.State == StateResolved || other.ID == inc.ID {
			continue
		}
		if inc.OpenedAt.Sub(other.OpenedAt).Abs() > LinkWindow {
			continue
		}
		switch {
		case inc.Agency == catalogue.ProviderID && other.Agency != catalogue.ProviderID:
			if len(explains) < 500 {
				explains = append(explains, other.ID)
			}
		case inc.Agency != catalogue.ProviderID && other.Agency == catalogue.ProviderID && inc.ExplainedBy == "":
			inc.ExplainedBy = other.ID
		}
	}
	if len(explains) > 0 {
		sort.Strings(explains)
		inc.Explains = explains
	}
}

func (e *Engine) load(ctx context.Context, key string) (*Incident, uint64, error) {
	ent, err := e.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load incident state: %w", err)
	}
	var inc Incident
	if err := json.Unmarshal(ent.Value(), &inc); err != nil {
		return nil, 0, fmt.Errorf("decode incident state %s: %w", key, err)
	}
	return &inc, ent.Revision(), nil
}

// enqueue publishes the incident's current version to the outbox (its
// JetStream message id makes a repeat a no-op) and records that it did.
func (e *Engine) enqueue(ctx context.Context, key string, inc *Incident, rev uint64) error {
	b, err := json.Marshal(inc)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: bus.OutboxSubject(inc.Agency), Data: b, Header: nats.Header{}}
	msg.Header.Set(headerIncident, inc.ID) // its delivery lane
	bus.InjectTrace(ctx, msg)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.opts.Bus.Publish(pctx, msg, inc.ID+"-"+strconv.FormatUint(inc.Version, 10)); err != nil {
		return fmt.Errorf("enqueue delivery of %s: %w", inc.ID, err)
	}
	inc.Enqueued = inc.Version
	nb, err := json.Marshal(inc)
	if err != nil {
		return err
	}
	if _, err := e.state.Update(ctx, key, nb, rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
		// A concurrent update carries a newer version and enqueues it;
		// anything else is worth a retry of the whole message.
		return fmt.Errorf("record enqueue of %s: %w", inc.ID, err)
	}
	return nil
}

// Sweep applies the passage of time to every open incident (expired alerts,
// quiet flapping incidents), and re-enqueues any version a crash left out
// of the outbox.
func (e *Engine) Sweep(ctx context.Context) error {
	lister, err := e.state.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return err
	}
	cat := e.opts.Catalogue.Get()
	now := e.opts.Now()
	for key := range lister.Keys() {
		cur, rev, err := e.load(ctx, key)
		if err != nil || cur == nil {
			continue
		}
		if !cur.Open() && cur.Enqueued >= cur.Version {
			// Forget keys long quiet: tombstones after a day, resolved
			// incidents (kept for the reopen window and late notices) after
			// a week. The built-in store keeps the incidents themselves.
			keep := stateRetention
			if cur.ID == "" {
				keep = tombstoneRetention
			}
			if now.Sub(cur.LastSeen) > keep {
				_ = e.state.Delete(ctx, key, jetstream.LastRevision(rev))
			}
			continue
		}
		p := PolicyFor(cat, cur.Agency)
		t := Target{StoredKey: key, Key: cur.Key}
		if err := e.apply(ctx, t, func(c *Incident, now time.Time) (*Incident, Change) { return Sweep(c, p, now) }); err != nil {
			return err
		}
	}
	return nil
}

// Incident returns the current incident of a stored key (tests, tools).
func (e *Engine) Incident(ctx context.Context, storedKey string) (*Incident, error) {
	inc, _, err := e.load(ctx, storedKey)
	return inc, err
}

// PolicyFor returns the lifecycle policy of an agency.
func PolicyFor(cat *catalogue.Catalogue, agency string) Policy {
	p := Policy{
		ReopenWindow:  time.Duration(cat.Ticketing.ReopenWindow),
		FlapWindow:    time.Duration(cat.Ticketing.FlapWindow),
		FlapThreshold: cat.Ticketing.FlapThreshold,
	}
	if a := cat.Agency(agency); a != nil && a.ReopenWindow != 0 {
		p.ReopenWindow = time.Duration(a.ReopenWindow)
	}
	return p
}

// incidentAgencies are those whose alerts become incidents: the
// catalogue's agencies, and the provider when it has rules of its own.
func incidentAgencies(cat *catalogue.Catalogue) []*catalogue.Agency {
	if pa := cat.ProviderAgency(); pa != nil {
		return append(slices.Clip(cat.Agencies), pa)
	}
	return cat.Agencies
}

// TargetFor decides where an alert's incident belongs, from the catalogue.
// A non-empty reason means no incident: the reason is counted.
func TargetFor(cat *catalogue.Catalogue, agency string, a bus.Alert) (Target, string) {
	ag := cat.Agency(agency)
	if agency == catalogue.ProviderID {
		ag = cat.ProviderAgency()
	}
	switch {
	case ag == nil:
		return Target{}, "unknown_agency"
	case ag.Phase == catalogue.PhasePlan:
		return Target{}, "plan_phase"
	case a.Labels["maintenance"] == "true":
		return Target{}, "maintenance"
	case a.Labels["alertname"] == "":
		return Target{}, "no_alertname"
	}
	service := a.Labels["service"]
	t := Target{Agency: agency, Service: service, Tier: "medium", Policy: PolicyFor(cat, agency)}
	rem := ag.Remedy
	if svc := ag.Service(service); svc != nil {
		t.Tier = svc.Tier
		if svc.Remedy != nil {
			rem = *svc.Remedy
		}
	}
	if ag.Phase == catalogue.PhaseBuild {
		rem = cat.Ticketing.Onboarding
		t.Queue = QueueOnboarding
	} else {
		t.Queue = QueueAgency
		if rem.Company == "" {
			rem.Company = ag.Name
		}
	}
	t.Company, t.SupportCompany, t.SupportOrganization, t.SupportGroup = rem.Company, rem.SupportCompany, rem.SupportOrganization, rem.AssignedGroup
	t.Key, t.StoredKey, t.GroupLabels = DedupKey(agency, service, a.Labels["alertname"], cat.Ticketing.GroupBy, a.Labels)
	return t, ""
}

type metrics struct {
	skipped         *prometheus.CounterVec
	opened          *prometheus.CounterVec
	conflicts       prometheus.Counter
	delivered       *prometheus.CounterVec
	failed          *prometheus.CounterVec
	retries         *prometheus.CounterVec
	up              *prometheus.GaugeVec
	deliverySeconds *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_ticketing_alerts_skipped_total",
			Help: "Alerts that made no incident, by reason (maintenance, plan_phase, unknown_agency, no_alertname, undecodable).",
		}, []string{"agency", "reason"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_ticketing_incidents_opened_total",
			Help: "Incidents opened, by agency and queue.",
		}, []string{"agency", "queue"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samdrift_ticketing_state_conflicts_total",
			Help: "Compare-and-set conflicts on incident state (concurrent updates by replicas), each retried.",
		}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_ticketing_deliveries_total",
			Help: "Incident changes a backend took.",
		}, []string{"backend"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_ticketing_delivery_failures_total",
			Help: "Incident changes a backend refused for good (not retried).",
		}, []string{"backend"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_ticketing_delivery_retries_total",
			Help: "Delivery attempts that failed temporarily and were retried after a backoff.",
		}, []string{"backend"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "samdrift_ticketing_backend_up",
			Help: "Whether the last delivery attempt to the backend succeeded (0: retrying with backoff).",
		}, []string{"backend"}),
		deliverySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "samdrift_ticketing_delivery_duration_seconds",
			Help:    "Time a backend took per delivery attempt.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.skipped, m.opened, m.conflicts, m.delivered, m.failed, m.retries, m.up, m.deliverySeconds)
	}
	return m
}
