package ticketing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/samdrift/samdrift/bus"
)

// Backend is a ticket system incidents are delivered to.
type Backend interface {
	// Deliver makes the backend's ticket reflect inc and returns the ticket
	// reference. It must be idempotent on the incident: a repeat after a
	// crash, or an older version after a newer one, changes nothing.
	Deliver(ctx context.Context, inc *Incident) (ticket string, err error)
}

// FailureRecorder is a backend that records another backend's permanent
// failure on its copy of the incident (the built-in store, which the API
// shows).
type FailureRecorder interface {
	RecordFailure(ctx context.Context, inc *Incident) error
}

// TemporaryError is a delivery failure worth retrying (backend down, slow,
// rate limited). RetryAfter, if set, is how long the backend asked to wait.
type TemporaryError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *TemporaryError) Error() string { return "temporary: " + e.Err.Error() }
func (e *TemporaryError) Unwrap() error { return e.Err }

// Temporary marks err as worth retrying.
func Temporary(err error, retryAfter time.Duration) error {
	return &TemporaryError{Err: err, RetryAfter: retryAfter}
}

// DeliveryOptions configure one backend's delivery worker.
type DeliveryOptions struct {
	// Name of the backend; its consumers are "deliver-<name>-<agency>".
	Name    string
	Backend Backend
	// Primary: the backend whose ticket reference the incident shows. When
	// it refuses an incident for good, a delivery_failed notice is queued
	// for the notifiers.
	Primary bool
	// Notifier: the backend is a notification route; it also gets the
	// delivery_failed notices, which ticket backends skip.
	Notifier bool
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// failure (with jitter): while the backend is down only one attempt per
	// delay reaches it, and deliveries resume in order when it is back.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency bounds the deliveries in flight to the backend at once,
	// over every agency (default 16). Lanes is how many of an agency's
	// incidents are delivered at once (default 8); each incident's changes
	// arrive one after the other, in order.
	Concurrency, Lanes int
}

func (o *DeliveryOptions) defaults() {
	if o.MinBackoff == 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.Lanes == 0 {
		o.Lanes = 8
	}
}

// deliveryAckWait is how long an outbox entry stays with a worker that
// reports no progress (a crashed one).
const deliveryAckWait = 15 * time.Second

// deliverySpec is the outbox consumer of one backend and agency: every
// agency has its own, so that a quiet agency's incident is never queued
// behind a noisy agency's thousands.
func deliverySpec(o DeliveryOptions, agency string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Stream: bus.StreamOutbox, Durable: "deliver-" + o.Name + "-" + agency, Filter: bus.OutboxSubject(agency),
		// Short, kept alive with progress reports while a delivery is being
		// retried: after a crash, the entry in flight is redelivered soon.
		AckWait: deliveryAckWait,
		// Room for entries queued behind their incident's delivery
		// besides one per lane.
		MaxAckPending: 4 * o.Lanes,
	}
}

// EnsureDelivery creates the backend's outbox consumers, one per agency of
// the catalogue, so that everything enqueued from now on is kept for it.
// Call it before processing alerts; the engine calls it again for agencies
// added later, before their first alert.
func (e *Engine) EnsureDelivery(ctx context.Context, o DeliveryOptions) error {
	o.defaults()
	e.mu.Lock()
	known := false
	for _, d := range e.deliveries {
		known = known || d.Name == o.Name
	}
	if !known {
		e.deliveries = append(e.deliveries, o)
	}
	e.mu.Unlock()
	for _, a := range incidentAgencies(e.opts.Catalogue.Get()) {
		if _, err := e.opts.Bus.EnsureConsumer(ctx, deliverySpec(o, a.ID)); err != nil {
			return fmt.Errorf("delivery consumer of %s for %s: %w", o.Name, a.ID, err)
		}
	}
	return nil
}

// ensureDeliveries creates every backend's outbox consumer of one agency.
func (e *Engine) ensureDeliveries(ctx context.Context, agency string) error {
	e.mu.Lock()
	ds := slices.Clone(e.deliveries)
	e.mu.Unlock()
	for _, o := range ds {
		if _, err := e.opts.Bus.EnsureConsumer(ctx, deliverySpec(o, agency)); err != nil {
			return err
		}
	}
	return nil
}

// RunDelivery delivers the outbox to one backend until ctx ends: every
// agency's entries through its own consumer and lanes, at most
// o.Concurrency at once, one probe at a time while the backend is down.
func (e *Engine) RunDelivery(ctx context.Context, o DeliveryOptions) error {
	o.defaults()
	if err := e.EnsureDelivery(ctx, o); err != nil && ctx.Err() == nil {
		// The bus is away: each agency's consumer is set up when it is back.
		e.logger.Warn("delivery consumers not ensured yet", "backend", o.Name, "err", err)
	}
	w := &deliveryWorker{e: e, o: o, up: e.metrics.backendUp(o.Name), sem: make(chan struct{}, o.Concurrency), gate: &gate{}}
	w.up.Set(1)
	return e.perAgency(ctx, "delivery "+o.Name, func(ctx context.Context, agency string) {
		w.runAgency(ctx, agency)
	})
}

// deliveryWorker delivers to one backend.
type deliveryWorker struct {
	e    *Engine
	o    DeliveryOptions
	up   prometheus.Gauge
	sem  chan struct{} // bounds the calls in flight to the backend
	gate *gate         // while the backend is down, one probe per backoff
}

// runAgency delivers one agency's outbox entries: up to Lanes incidents at
// once, each incident's entries one after the other, in order. An entry of
// an incident already being delivered waits behind it without holding up
// the others, and every entry held reports progress, so that JetStream
// does not hand it out again while it waits (for a lane, the backend's
// concurrency or its pacing).
func (w *deliveryWorker) runAgency(ctx context.Context, agency string) {
	k := newKeyed(w.o.Lanes, func(m jetstream.Msg) { w.deliver(ctx, m) })
	done := make(chan struct{})
	go func() { k.run(ctx); close(done) }()
	defer func() { <-done }()
	err := w.e.opts.Bus.Consume(ctx, deliverySpec(w.o, agency), w.o.Lanes, w.e.logger, func(ctx context.Context, batch []jetstream.Msg) {
		for _, m := range batch {
			k.add(m.Headers().Get(headerIncident), m)
		}
	})
	if err != nil && ctx.Err() == nil {
		w.e.logger.Error("delivery consumer", "backend", w.o.Name, "agency", agency, "err", err)
	}
}

// keyed works on at most n keys at once, the items of one key one after the
// other in the order they were added; keys take turns in the order they
// became ready. The consumer's MaxAckPending bounds what it holds.
type keyed struct {
	n         int
	work      func(jetstream.Msg)
	heartbeat time.Duration // progress reports on held items

	mu      sync.Mutex
	wake    chan struct{}
	queued  map[string][]jetstream.Msg // items not started, per key
	running map[string]bool
	ready   []string // keys with queued items and none running
	held    map[jetstream.Msg]struct{}
}

func newKeyed(n int, work func(jetstream.Msg)) *keyed {
	return &keyed{n: n, work: work, heartbeat: deliveryAckWait / 3, wake: make(chan struct{}, 1), queued: map[string][]jetstream.Msg{},
		running: map[string]bool{}, held: map[jetstream.Msg]struct{}{}}
}

// add queues m behind its key's items; it never blocks.
func (k *keyed) add(key string, m jetstream.Msg) {
	k.mu.Lock()
	k.held[m] = struct{}{}
	if len(k.queued[key]) == 0 && !k.running[key] {
		k.ready = append(k.ready, key)
	}
	k.queued[key] = append(k.queued[key], m)
	k.mu.Unlock()
	k.signal()
}

func (k *keyed) signal() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// next takes the first item of the next ready key, if any.
func (k *keyed) next() (string, jetstream.Msg, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.ready) == 0 {
		return "", nil, false
	}
	key := k.ready[0]
	k.ready = k.ready[1:]
	q := k.queued[key]
	m := q[0]
	if len(q) == 1 {
		delete(k.queued, key)
	} else {
		k.queued[key] = q[1:]
	}
	k.running[key] = true
	if len(k.ready) > 0 {
		k.signal() // another worker may take the next key
	}
	return key, m, true
}

// finished ends an item: its key is ready again if more of it is queued.
func (k *keyed) finished(key string, m jetstream.Msg) {
	k.mu.Lock()
	delete(k.held, m)
	delete(k.running, key)
	if len(k.queued[key]) > 0 {
		k.ready = append(k.ready, key)
	}
	k.mu.Unlock()
	k.signal()
}

// run starts items on n workers until ctx ends, and reports progress on
// every held item each third of the outbox's ack wait.
func (k *keyed) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for range k.n {
		wg.Go(func() {
			for {
				key, m, ok := k.next()
				if !ok {
					select {
					case <-ctx.Done():
						return
					case <-k.wake:
						continue
					}
				}
				k.work(m)
				k.finished(key, m)
				if ctx.Err() != nil {
					return
				}
			}
		})
	}
	t := time.NewTicker(k.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.mu.Lock()
			held := make([]jetstream.Msg, 0, len(k.held))
			for m := range k.held {
				held = append(held, m)
			}
			k.mu.Unlock()
			for _, m := range held {
				_ = m.InProgress()
			}
		}
	}
}

// headerIncident names the incident of an outbox entry.
const headerIncident = "Samdrift-Incident"

// deliver retries one outbox entry until the backend takes it, refuses it
// for good, or ctx ends (then it is redelivered after a restart).
func (w *deliveryWorker) deliver(ctx context.Context, m jetstream.Msg) {
	e, o := w.e, w.o
	var inc Incident
	if err := json.Unmarshal(m.Data(), &inc); err != nil {
		agency, _, _ := strings.Cut(strings.TrimPrefix(m.Subject(), "outbox."), ".")
		e.logger.Error("undecodable delivery moved to the dead letters", "backend", o.Name, "agency", agency, "err", err)
		_ = e.opts.Bus.MoveToDeadLetter(ctx, agency, bus.StageDelivery, "undecodable outbox entry for "+o.Name+": "+err.Error(), m)
		_ = m.Term()
		return
	}
	if inc.LastEvent == EventDeliveryFailed && !o.Notifier {
		// A notice for people, not a change of the ticket; a store that
		// shows incidents records the failure.
		if fr, ok := o.Backend.(FailureRecorder); ok {
			if err := fr.RecordFailure(ctx, &inc); err != nil {
				e.logger.Warn("record delivery failure", "backend", o.Name, "incident", inc.ID, "err", err)
			}
		}
		_ = m.Ack()
		return
	}
	if o.Notifier && inc.Ticket == "" && inc.LastEvent != EventDeliveryFailed {
		// People want the ticket number: give the primary backend a moment
		// to create the ticket.
		inc.Ticket = e.awaitTicket(ctx, &inc, m, ticketWait)
	}
	for attempt := 1; ; attempt++ {
		if !w.gate.wait(ctx, m) {
			return
		}
		select {
		case w.sem <- struct{}{}:
		case <-ctx.Done():
			w.gate.release()
			return
		}
		start := time.Now()
		ticket, err := deliverInProgress(ctx, o.Backend, &inc, m)
		<-w.sem
		e.metrics.deliverySeconds.WithLabelValues(o.Name).Observe(time.Since(start).Seconds())
		if err == nil {
			w.gate.ok()
			w.up.Set(1)
			_ = m.Ack()
			e.metrics.delivered.WithLabelValues(o.Name).Inc()
			if o.Primary {
				e.recordDelivery(ctx, &inc, ticket, "")
			}
			return
		}
		var tmp *TemporaryError
		if !errors.As(err, &tmp) {
			w.gate.ok() // the backend answered: it is up
			e.metrics.failed.WithLabelValues(o.Name).Inc()
			e.logger.Error("backend refused incident; it will not be retried", "backend", o.Name, "incident", inc.ID, "agency", inc.Agency, "err", err)
			if o.Primary {
				e.recordDelivery(ctx, &inc, "", err.Error())
				e.noticeFailure(ctx, inc, err)
			}
			_ = m.Ack()
			return
		}
		w.up.Set(0)
		e.metrics.retries.WithLabelValues(o.Name).Inc()
		wait := w.gate.failed(o.MinBackoff, o.MaxBackoff, tmp.RetryAfter)
		if attempt == 1 || attempt%10 == 0 {
			e.logger.Warn("delivery failed, retrying", "backend", o.Name, "incident", inc.ID, "attempt", attempt, "retry_in", wait, "err", err)
		}
	}
}

// gate keeps a down backend from being hammered by the lanes of every
// agency: after a temporary failure all wait until the backoff has passed,
// then one of them probes; its outcome opens the gate for all, or doubles
// the backoff.
type gate struct {
	mu        sync.Mutex
	downUntil time.Time
	probing   bool
	backoff   time.Duration
}

// wait returns once this caller may try the backend (false if ctx ended),
// reporting progress on m meanwhile. A caller that was let through while
// the backend is down is its probe, and must report with ok or failed.
func (g *gate) wait(ctx context.Context, m jetstream.Msg) bool {
	for {
		g.mu.Lock()
		now := time.Now()
		switch {
		case g.downUntil.IsZero():
			g.mu.Unlock()
			return true
		case !g.probing && !now.Before(g.downUntil):
			g.probing = true
			g.mu.Unlock()
			return true
		}
		d := time.Until(g.downUntil)
		g.mu.Unlock()
		if d < 50*time.Millisecond {
			d = 50 * time.Millisecond // a probe is under way
		}
		if !sleepInProgress(ctx, m, d) {
			return false
		}
	}
}

// ok opens the gate: the backend answered.
func (g *gate) ok() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.downUntil, g.probing, g.backoff = time.Time{}, false, 0
}

// release ends a probe that did not happen.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
}

// failed closes the gate for the next backoff (at least what the backend
// asked for) and returns it.
func (g *gate) failed(minB, maxB, retryAfter time.Duration) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.backoff == 0:
		g.backoff = minB
	case g.probing || time.Now().After(g.downUntil):
		g.backoff = min(2*g.backoff, maxB)
	}
	wait := max(g.backoff, retryAfter)
	wait = time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
	if until := time.Now().Add(wait); until.After(g.downUntil) {
		g.downUntil = until
	}
	g.probing = false
	return wait
}

// sleepInProgress waits, telling JetStream the message is still being
// worked on so it is not redelivered elsewhere.
func sleepInProgress(ctx context.Context, m jetstream.Msg, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(left, deliveryAckWait/3)):
			_ = m.InProgress()
		}
	}
}

// recordDelivery notes the ticket reference (or a permanent failure) on the
// incident's state, if the key still holds that incident.
func (e *Engine) recordDelivery(ctx context.Context, inc *Incident, ticket, failure string) {
	stored := inc.StateKey
	for range 10 {
		cur, rev, err := e.load(ctx, stored)
		if err != nil || cur == nil || cur.ID != inc.ID {
			return
		}
		if cur.Delivered >= inc.Version && cur.Ticket == ticket && cur.DeliveryError == failure {
			return
		}
		cur.Delivered = max(cur.Delivered, inc.Version)
		if ticket != "" {
			cur.Ticket = ticket
		}
		cur.DeliveryError = failure
		b, _ := json.Marshal(cur)
		if _, err := e.state.Update(ctx, stored, b, rev); err == nil || (!errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists)) {
			return
		}
	}
}

func (m *metrics) backendUp(name string) prometheus.Gauge { return m.up.WithLabelValues(name) }

// deliverInProgress calls the backend, reporting progress on m while the
// call lasts.
func deliverInProgress(ctx context.Context, b Backend, inc *Incident, m jetstream.Msg) (string, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(deliveryAckWait / 3)
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
	return b.Deliver(ctx, inc)
}

// noticeFailure queues a delivery_failed notice of the incident for the
// notification routes, so that ops learn a ticket did not reach the backend.
func (e *Engine) noticeFailure(ctx context.Context, inc Incident, cause error) {
	inc.LastEvent = EventDeliveryFailed
	inc.DeliveryError = cause.Error()
	b, err := json.Marshal(inc)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("%s-%d-failed", inc.ID, inc.Version)
	msg := &nats.Msg{Subject: bus.OutboxSubject(inc.Agency), Data: b, Header: nats.Header{}}
	msg.Header.Set(headerIncident, inc.ID)
	if _, err := e.opts.Bus.Publish(pctx, msg, id); err != nil {
		e.logger.Error("queue delivery failure notice", "incident", inc.ID, "err", err)
	}
}

// PruneDeliveries removes the outbox consumers of backends and agencies no
// longer configured: the outbox keeps each entry until every consumer took
// it.
func (e *Engine) PruneDeliveries(ctx context.Context, keep []DeliveryOptions) error {
	want := map[string]bool{}
	for _, d := range keep {
		for _, a := range incidentAgencies(e.opts.Catalogue.Get()) {
			want[deliverySpec(d, a.ID).Durable] = true
		}
	}
	names, err := e.opts.Bus.ConsumerNames(ctx, bus.StreamOutbox)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, "deliver-") && !want[name] {
			if err := e.opts.Bus.DeleteConsumer(ctx, bus.StreamOutbox, name); err != nil {
				return err
			}
			e.logger.Info("removed outbox consumer of a backend or agency no longer configured", "consumer", name)
		}
	}
	return nil
}

// ticketWait bounds how long a notification waits for the ticket number.
const ticketWait = 20 * time.Second

// awaitTicket returns the ticket reference the primary backend recorded for
// the incident, waiting up to max for it.
func (e *Engine) awaitTicket(ctx context.Context, inc *Incident, m jetstream.Msg, max time.Duration) string {
	deadline := time.Now().Add(max)
	for {
		cur, _, err := e.load(ctx, inc.StateKey)
		if err == nil && cur != nil && cur.ID == inc.ID && (cur.Ticket != "" || cur.DeliveryError != "") {
			return cur.Ticket
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return ""
		}
		_ = m.InProgress()
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(250 * time.Millisecond):
		}
	}
}
