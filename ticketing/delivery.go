package ticketing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

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
	// Name of the backend; the durable consumer is "deliver-<name>".
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
}

// deliveryAckWait is how long an outbox entry stays with a worker that
// reports no progress (a crashed one).
const deliveryAckWait = 15 * time.Second

// EnsureDelivery creates the backend's outbox consumer, so that everything
// enqueued from now on is kept for it. Call it before processing alerts.
func (e *Engine) EnsureDelivery(ctx context.Context, o DeliveryOptions) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := e.opts.Bus.JS.CreateOrUpdateConsumer(cctx, bus.StreamOutbox, jetstream.ConsumerConfig{
		Durable:   "deliver-" + o.Name,
		AckPolicy: jetstream.AckExplicitPolicy,
		// Short, kept alive with progress reports while a delivery is being
		// retried: after a crash, the entry in flight is redelivered soon.
		AckWait: deliveryAckWait,
		// One at a time: deliveries reach the backend in the order the
		// incidents changed.
		MaxAckPending: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create delivery consumer for %s: %w", o.Name, err)
	}
	return cons, nil
}

// RunDelivery delivers the outbox to one backend until ctx ends.
func (e *Engine) RunDelivery(ctx context.Context, o DeliveryOptions) error {
	if o.MinBackoff == 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = time.Minute
	}
	cons, err := e.EnsureDelivery(ctx, o)
	if err != nil {
		return err
	}
	up := e.metrics.backendUp(o.Name)
	up.Set(1)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			e.deliver(ctx, o, m, up)
		}
	}
	return nil
}

// deliver retries one outbox entry until the backend takes it, refuses it
// for good, or ctx ends (then it is redelivered after a restart).
func (e *Engine) deliver(ctx context.Context, o DeliveryOptions, m jetstream.Msg, up prometheus.Gauge) {
	var inc Incident
	if err := json.Unmarshal(m.Data(), &inc); err != nil {
		e.logger.Error("dropping undecodable delivery", "backend", o.Name, "err", err)
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
	backoff := o.MinBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		ticket, err := deliverInProgress(ctx, o.Backend, &inc, m)
		e.metrics.deliverySeconds.WithLabelValues(o.Name).Observe(time.Since(start).Seconds())
		if err == nil {
			up.Set(1)
			_ = m.Ack()
			e.metrics.delivered.WithLabelValues(o.Name).Inc()
			if o.Primary {
				e.recordDelivery(ctx, &inc, ticket, "")
			}
			return
		}
		var tmp *TemporaryError
		if !errors.As(err, &tmp) {
			e.metrics.failed.WithLabelValues(o.Name).Inc()
			e.logger.Error("backend refused incident; it will not be retried", "backend", o.Name, "incident", inc.ID, "agency", inc.Agency, "err", err)
			if o.Primary {
				e.recordDelivery(ctx, &inc, "", err.Error())
				e.noticeFailure(ctx, inc, err)
			}
			_ = m.Ack()
			return
		}
		up.Set(0)
		e.metrics.retries.WithLabelValues(o.Name).Inc()
		wait := backoff
		if tmp.RetryAfter > wait {
			wait = tmp.RetryAfter
		}
		wait = time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		if attempt == 1 || attempt%10 == 0 {
			e.logger.Warn("delivery failed, retrying", "backend", o.Name, "incident", inc.ID, "attempt", attempt, "retry_in", wait, "err", err)
		}
		backoff = min(backoff*2, o.MaxBackoff)
		if !sleepInProgress(ctx, m, wait) {
			return
		}
	}
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
	if _, err := e.opts.Bus.JS.Publish(pctx, bus.OutboxSubject(inc.Agency), b, jetstream.WithMsgID(id)); err != nil {
		e.logger.Error("queue delivery failure notice", "incident", inc.ID, "err", err)
	}
}

// PruneDeliveries removes the outbox consumers of backends no longer
// configured: the outbox keeps each entry until every consumer took it.
func (e *Engine) PruneDeliveries(ctx context.Context, keep []DeliveryOptions) error {
	want := map[string]bool{}
	for _, d := range keep {
		want["deliver-"+d.Name] = true
	}
	s, err := e.opts.Bus.JS.Stream(ctx, bus.StreamOutbox)
	if err != nil {
		return err
	}
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		if strings.HasPrefix(name, "deliver-") && !want[name] {
			if err := s.DeleteConsumer(ctx, name); err != nil {
				return err
			}
			e.logger.Info("removed outbox consumer of a backend no longer configured", "consumer", name)
		}
	}
	return names.Err()
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
