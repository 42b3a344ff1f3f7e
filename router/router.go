package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// Durable is the name of the routers' shared JetStream consumer: router
// replicas share its work.
const Durable = "router"

const maxBatch = 256

// Options configure a router.
type Options struct {
	Bus        *bus.Bus
	Catalogue  *catalogue.Holder
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	// Meter, if set, counts each agency's samples once JetStream has them
	// (samples_ingested): the metering point when several store replicas
	// each hold a copy and cannot count alone.
	Meter interface {
		Add(agency, kind string, n float64)
	}
}

// Router routes ingested batches to their agency.
type Router struct {
	// dec and enc are used by the single routing goroutine.
	dec     bus.MetricsDecoder
	enc     bus.MetricsEncoder
	opts    Options
	logger  *slog.Logger
	tracer  trace.Tracer
	metrics *metrics
	limiter *limiter
}

// New returns a router.
func New(o Options) *Router {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	r := &Router{
		opts:    o,
		logger:  o.Logger,
		tracer:  o.Tracer.Tracer("github.com/samdrift/samdrift/router"),
		metrics: newMetrics(o.Registerer),
		limiter: newLimiter(time.Now),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(activeSeriesCollector{r.limiter})
	}
	if o.Catalogue != nil {
		o.Catalogue.Watch(r.limiter.forget)
	}
	return r
}

// Admit reports, without taking anything, whether n more samples of the
// agency would pass its rate limit, and if not when to retry. A push receiver
// in the same process uses it to shed a flood before it reaches the bus; the
// router's own check on the routed batch stays the authority.
func (r *Router) Admit(a *catalogue.Agency, n int) (bool, time.Duration) {
	return r.limiter.Peek(a, n)
}

// Run consumes ingest.> until ctx is done.
func (r *Router) Run(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	cons, err := r.opts.Bus.JS.CreateOrUpdateConsumer(cctx, bus.StreamIngest, jetstream.ConsumerConfig{
		Durable:   Durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		// A crashed router's batches come back after this.
		AckWait:       20 * time.Second,
		MaxAckPending: 4 * maxBatch,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("create router consumer: %w", err)
	}
	ch := make(chan jetstream.Msg, maxBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*maxBatch))
	if err != nil {
		return fmt.Errorf("consume ingest: %w", err)
	}
	defer cc.Stop()
	batch := make([]jetstream.Msg, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			batch = append(batch, m)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case m := <-ch:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		r.routeBatch(ctx, batch)
	}
}

type pending struct {
	in      jetstream.Msg
	futs    []jetstream.PubAckFuture
	verdict *verdict
	agency  string // metrics batches: whose samples
	samples int
}

// verdict is an answer owed to a push receiver waiting on its batch.
type verdict struct {
	subject string
	v       bus.Verdict
}

// routeBatch republishes every message of the batch asynchronously, then
// acks each input whose output JetStream confirmed, and only then tells a
// waiting push receiver the batch is routed.
func (r *Router) routeBatch(ctx context.Context, batch []jetstream.Msg) {
	cat := r.opts.Catalogue.Get()
	wr := &prompb.WriteRequest{}
	var outs []pending
	for _, m := range batch {
		res, err := r.route(ctx, cat, m, wr)
		if err != nil {
			var rej *rejection
			if errors.As(err, &rej) {
				r.metrics.rejected.WithLabelValues(rej.reason).Inc()
				r.logger.Warn("rejected batch", "subject", m.Subject(), "reason", rej.reason, "err", rej.err)
				_ = m.Term()
				r.answer(res.verdict(400, rej.Error()))
				continue
			}
			r.logger.Warn("route failed, will retry", "subject", m.Subject(), "err", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		if len(res.outs) == 0 {
			// Nothing left to forward (all refused or dropped by relabelling).
			_ = m.Ack()
			r.answer(res.final())
			continue
		}
		p := pending{in: m, verdict: res.final(), agency: res.agency, samples: res.samples}
		for i, out := range res.outs {
			id := msgID(m)
			if len(res.outs) > 1 {
				id += "-" + strconv.Itoa(i)
			}
			fut, err := r.opts.Bus.JS.PublishMsgAsync(out, jetstream.WithMsgID(id))
			if err != nil {
				r.logger.Warn("publish failed, will retry", "subject", out.Subject, "err", err)
				p.futs = nil
				break
			}
			p.futs = append(p.futs, fut)
		}
		if p.futs == nil {
			_ = m.NakWithDelay(time.Second)
			continue
		}
		outs = append(outs, p)
	}
	timeout := time.After(30 * time.Second)
	for _, p := range outs {
		ok, dup := true, false
	wait:
		for _, fut := range p.futs {
			select {
			case ack := <-fut.Ok():
				dup = dup || ack.Duplicate
			case err := <-fut.Err():
				r.logger.Warn("publish not acknowledged, will retry", "subject", fut.Msg().Subject, "err", err)
				ok = false
				break wait
			case <-timeout:
				ok = false
				break wait
			case <-ctx.Done():
				return // unacked inputs are redelivered
			}
		}
		if !ok {
			_ = p.in.NakWithDelay(time.Second)
			continue
		}
		_ = p.in.Ack()
		r.answer(p.verdict)
		// A redelivered batch republished after a crash is a duplicate to
		// JetStream (same message id): counted once.
		if r.opts.Meter != nil && p.samples > 0 && !dup {
			r.opts.Meter.Add(p.agency, "samples_ingested", float64(p.samples))
		}
	}
}

// answer publishes a verdict to the push receiver waiting for it.
func (r *Router) answer(v *verdict) {
	if v == nil {
		return
	}
	if err := r.opts.Bus.NC.Publish(v.subject, v.v.Encode()); err != nil {
		r.logger.Debug("publish verdict", "err", err)
	}
}

// msgID makes the output's JetStream de-duplication id from the input's
// stream position, so a redelivered input is not stored twice.
func msgID(m jetstream.Msg) string {
	md, err := m.Metadata()
	if err != nil {
		return ""
	}
	return "ingest-" + strconv.FormatUint(md.Sequence.Stream, 10)
}

// rejection is a batch that can never be routed; it is dropped (and counted).
type rejection struct {
	reason string
	err    error
}

func (e *rejection) Error() string { return e.reason + ": " + e.err.Error() }

func reject(reason string, format string, args ...any) error {
	return &rejection{reason: reason, err: fmt.Errorf(format, args...)}
}

// result is what routing one message produced.
type result struct {
	agency     string
	samples    int         // metrics samples forwarded
	outs       []*nats.Msg // none: nothing to forward
	verdictSub string      // where the push receiver waits, if it does
	outcome    outcome
}

func (res *result) verdict(status int, msg string) *verdict {
	if res == nil || res.verdictSub == "" {
		return nil
	}
	return &verdict{subject: res.verdictSub, v: bus.Verdict{Status: status, Message: msg}}
}

func (res *result) final() *verdict {
	if res.verdictSub == "" {
		return nil
	}
	o := res.outcome
	st := o.status
	if st == 0 {
		st = 200
	}
	return &verdict{subject: res.verdictSub, v: bus.Verdict{Status: st, Message: o.message, RetryAfter: o.retryAfter, Accepted: o.accepted}}
}

// route turns one ingest message into its agency message.
func (r *Router) route(ctx context.Context, cat *catalogue.Catalogue, m jetstream.Msg, wr *prompb.WriteRequest) (*result, error) {
	res := &result{}
	if v := m.Headers().Get(bus.HeaderVerdict); bus.ValidVerdictSubject(v) {
		res.verdictSub = v
	}
	kind, source, ok := bus.ParseIngestSubject(m.Subject())
	if !ok {
		return res, reject("bad_subject", "subject %q is not ingest.<kind>.<source>", m.Subject())
	}
	src, err := resolve(cat, source, kind)
	if err != nil {
		return res, err
	}
	agencyAttr := "provider"
	if src.agency != nil {
		agencyAttr = src.agency.ID
	}
	ctx, span := r.tracer.Start(bus.ExtractTrace(ctx, m.Headers()), "router.route",
		trace.WithAttributes(attribute.String("agency", agencyAttr), attribute.String("kind", kind)))
	defer span.End()

	switch kind {
	case bus.KindMetrics:
		if src.agency == nil {
			return res, reject("not_agency_credential", "metrics need an agency source")
		}
		if err := r.dec.Decode(m.Data(), wr); err != nil {
			span.SetStatus(codes.Error, err.Error())
			return res, reject("undecodable", "%v", err)
		}
		r.limitMetrics(src, wr, &res.outcome, redelivered(m))
		for reason, n := range res.outcome.discarded {
			r.metrics.discarded.WithLabelValues(src.agency.ID, reason).Add(float64(n))
		}
		if len(wr.Timeseries) == 0 {
			return res, nil
		}
		data, err := r.enc.Encode(wr)
		if err != nil {
			return res, err
		}
		r.metrics.samples.WithLabelValues(src.agency.ID).Add(float64(res.outcome.accepted))
		r.metrics.batches.WithLabelValues(src.agency.ID, kind).Inc()
		out := &nats.Msg{Subject: bus.AgencySubject(src.agency.ID, kind), Data: data, Header: nats.Header{}}
		bus.InjectTrace(ctx, out)
		res.outs = []*nats.Msg{out}
		res.agency, res.samples = src.agency.ID, res.outcome.accepted
		return res, nil
	case bus.KindAlerts:
		outs, err := r.routeAlerts(ctx, cat, src, m.Data())
		if err != nil {
			return res, err
		}
		res.outs = outs
		return res, nil
	default:
		return res, reject("unknown_kind", "no route for kind %q", kind)
	}
}

// limitMetrics validates, relabels and limits a metrics batch in place.
// Pushed batches are all or nothing for invalid labels (the sender gets a
// 400 and nothing is half-written); scraped ones lose only the bad series.
func (r *Router) limitMetrics(src source, wr *prompb.WriteRequest, o *outcome, redelivered bool) {
	pushed := src.service == ""
	lim := src.agency.EffectiveLimits()
	for i := range wr.Timeseries {
		if problem := checkRaw(&wr.Timeseries[i]); problem != "" && pushed {
			n := 0
			for _, ts := range wr.Timeseries {
				n += len(ts.Samples) + len(ts.Histograms)
			}
			o.discard(reasonInvalidLabels, n, 400, problem)
			wr.Timeseries = wr.Timeseries[:0]
			return
		}
	}
	relabelWriteRequest(wr, src)
	kept := wr.Timeseries[:0]
	for _, ts := range wr.Timeseries {
		n := len(ts.Samples) + len(ts.Histograms)
		if problem := checkRaw(&ts); problem != "" {
			o.discard(reasonInvalidLabels, n, 400, problem)
			continue
		}
		if reason, problem := checkLimits(&ts, lim); reason != "" {
			if pushed {
				total := 0
				for _, t := range wr.Timeseries {
					total += len(t.Samples) + len(t.Histograms)
				}
				o.discard(reason, total, 400, problem)
				wr.Timeseries = wr.Timeseries[:0]
				return
			}
			o.discard(reason, n, 400, problem)
			continue
		}
		kept = append(kept, ts)
	}
	wr.Timeseries = kept
	r.limiter.admit(src.agency, wr, o, redelivered)
}

// redelivered reports whether JetStream delivers m a second time.
func redelivered(m jetstream.Msg) bool {
	md, err := m.Metadata()
	return err == nil && md.NumDelivered > 1
}
