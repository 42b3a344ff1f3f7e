package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
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

// PublishTimeout bounds the wait for JetStream to store a pushed batch;
// past it the sender gets 503 and retries.
const PublishTimeout = 5 * time.Second

// maxDeliveries bounds how often one ingest message is tried: past it,
// the message goes to its agency's dead letters and the stream moves on.
const maxDeliveries = 10

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
	// Peers, if set, is the number of live routers sharing the work: each
	// enforces that share of every agency's rates.
	Peers func() int
	Now   func() time.Time
	// Through, if set, is the store of this process: an in-process push,
	// once stored on the bus, is appended to it in the request, decoded
	// once (the single-process default; see store.Append).
	Through Through
}

// Through is a store that appends in-process pushes in the request.
type Through interface {
	// Begin registers a push to be stored as parts messages and returns
	// the token they carry.
	Begin(parts int) string
	// Abort says the push will not be appended in the request.
	Abort(token string)
	// Append appends the stored push (or leaves it to the consumer).
	Append(ctx context.Context, agency, token string, wr *prompb.WriteRequest) (int, error)
}

// Router decides which agency a batch belongs to, from its authenticated
// source, and hands it on to that agency's subjects. It runs in two ways:
// as the consumer of INGEST (what collectors in other processes, and
// agencies publishing to NATS directly, put there), and in process, for
// the push receivers of a collector in the same process (one bus hop: the
// batch is routed before its sender's 2xx).
type Router struct {
	// dec is used by the single INGEST-consuming goroutine.
	dec      bus.MetricsDecoder
	encoders sync.Pool
	// payloads recycles the encoded messages of in-process pushes once
	// JetStream acknowledged them (they were most of the router's garbage).
	payloads  sync.Pool
	opts      Options
	logger    *slog.Logger
	tracer    trace.Tracer
	metrics   *metrics
	limiter   *limiter
	validator Validator
}

// New returns a router.
func New(o Options) *Router {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Router{
		opts:      o,
		logger:    o.Logger,
		tracer:    o.Tracer.Tracer("github.com/samdrift/samdrift/router"),
		metrics:   newMetrics(o.Registerer),
		limiter:   newLimiter(o.Now, o.Peers),
		validator: Validator{Now: o.Now},
		encoders:  sync.Pool{New: func() any { return &bus.MetricsEncoder{} }},
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
// in the same process uses it to shed a flood before it reads the body; the
// router's own check on the routed batch stays the authority.
func (r *Router) Admit(a *catalogue.Agency, n int) (bool, time.Duration) {
	return r.limiter.Peek(a, n)
}

// consumerSpec is the routers' shared consumer of INGEST.
var consumerSpec = bus.ConsumerSpec{
	Stream: bus.StreamIngest, Durable: Durable,
	// A crashed router's batches come back after this.
	AckWait:       20 * time.Second,
	MaxAckPending: 4 * maxBatch,
}

// EnsureConsumer creates the routers' shared consumer, so that batches
// published from then on are routed.
func (r *Router) EnsureConsumer(ctx context.Context) error {
	_, err := r.opts.Bus.EnsureConsumer(ctx, consumerSpec)
	return err
}

// Run consumes ingest.> until ctx is done.
func (r *Router) Run(ctx context.Context) error {
	return r.opts.Bus.Consume(ctx, consumerSpec, maxBatch, r.logger, r.routeBatch)
}

// IngestMetrics routes a batch pushed to a receiver in this process: the
// sender authenticated as credential, and the receiver has validated the
// batch at the door (Validate, strict). The batch is labelled, limited and
// stored durably on its agency's subject — split to fit the bus — before
// the verdict returns: 200 means every accepted sample is durable.
func (r *Router) IngestMetrics(ctx context.Context, credential string, wr *prompb.WriteRequest) bus.Verdict {
	cat := r.opts.Catalogue.Get()
	src, err := resolve(cat, []string{bus.SourcePush, credential}, bus.KindMetrics)
	if err != nil {
		return bus.Verdict{Status: http.StatusForbidden, Message: err.Error()}
	}
	var o outcome
	r.labelAndLimit(src, wr, &o, false)
	r.countDiscards(src.agency.ID, &o)
	if len(wr.Timeseries) > 0 {
		msgs, err := r.encodeWith(ctx, src.agency.ID, wr, r.payload)
		tok := ""
		if err == nil {
			if r.opts.Through != nil {
				tok = r.opts.Through.Begin(len(msgs))
				for _, m := range msgs {
					m.Header.Set(bus.HeaderThrough, tok)
				}
			}
			pctx, cancel := context.WithTimeout(ctx, PublishTimeout)
			err = r.opts.Bus.PublishAll(pctx, msgs, nil)
			cancel()
			if err == nil {
				// Acknowledged: nothing holds the payloads any more. (After
				// a failure the client may still, and they are left to the
				// garbage collector.)
				for _, m := range msgs {
					b := m.Data[:0]
					r.payloads.Put(&b)
				}
			} else if tok != "" {
				r.opts.Through.Abort(tok)
			}
		}
		if err == nil && tok != "" {
			// Durable on the bus: the 2xx holds whatever happens next. A
			// failed append here leaves the messages to the consumer.
			_, _ = r.opts.Through.Append(ctx, src.agency.ID, tok, wr)
		}
		if err != nil {
			r.logger.Warn("push not stored: bus unavailable", "agency", src.agency.ID, "err", err)
			return bus.Verdict{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
				Message: "samdrift cannot store the batch right now (message bus unavailable); retry"}
		}
		r.forwarded(src.agency.ID, o.accepted, len(msgs), false)
	}
	return o.verdict()
}

// routeBatch routes a batch of INGEST messages: it republishes each on its
// agency's subject asynchronously, acks each input whose outputs JetStream
// confirmed, and only then tells a waiting push receiver the batch is
// routed.
func (r *Router) routeBatch(ctx context.Context, batch []jetstream.Msg) {
	cat := r.opts.Catalogue.Get()
	wr := &prompb.WriteRequest{}
	var outs []pending
	for _, m := range batch {
		res, err := r.route(ctx, cat, m, wr)
		if err != nil {
			r.fail(ctx, m, res, err)
			continue
		}
		if len(res.outs) == 0 {
			// Nothing left to forward (all refused or dropped).
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
			fut, err := r.opts.Bus.PublishAsync(out, id)
			if err != nil {
				r.logger.Warn("publish failed, will retry", "subject", out.Subject, "err", err)
				p.futs = nil
				break
			}
			p.futs = append(p.futs, fut)
		}
		if p.futs == nil {
			r.retry(ctx, m, res, errors.New("publish failed"))
			continue
		}
		outs = append(outs, p)
	}
	timeout := time.After(30 * time.Second)
	for _, p := range outs {
		ok, dup := true, false
		var perr error
	wait:
		for _, fut := range p.futs {
			select {
			case ack := <-fut.Ok():
				dup = dup || ack.Duplicate
			case err := <-fut.Err():
				perr, ok = err, false
				break wait
			case <-timeout:
				perr, ok = errors.New("no acknowledgement within 30s"), false
				break wait
			case <-ctx.Done():
				return // unacked inputs are redelivered
			}
		}
		if !ok {
			r.retry(ctx, p.in, &result{agency: p.agency}, perr)
			continue
		}
		_ = p.in.Ack()
		r.answer(p.verdict)
		if !dup {
			r.forwarded(p.agency, p.samples, len(p.futs), true)
		}
	}
}

// forwarded counts what reached an agency's subject. Redelivered batches
// republished after a crash are duplicates to JetStream (same message id)
// and are not counted again.
func (r *Router) forwarded(agency string, samples, msgs int, meter bool) {
	if samples == 0 {
		return
	}
	r.metrics.samples.WithLabelValues(agency).Add(float64(samples))
	r.metrics.batches.WithLabelValues(agency, bus.KindMetrics).Add(float64(msgs))
	if meter && r.opts.Meter != nil {
		r.opts.Meter.Add(agency, "samples_ingested", float64(samples))
	}
}

type pending struct {
	in      jetstream.Msg
	futs    []jetstream.PubAckFuture
	verdict *verdict
	agency  string // metrics batches: whose samples
	samples int
}

// fail handles a message the router cannot route: a refused source is
// counted and dropped (the sender, if waiting, gets a 4xx); a message that
// cannot be processed goes to the dead letters.
func (r *Router) fail(ctx context.Context, m jetstream.Msg, res *result, err error) {
	var rej *rejection
	if !errors.As(err, &rej) {
		r.retry(ctx, m, res, err)
		return
	}
	r.metrics.rejected.WithLabelValues(rej.reason).Inc()
	r.logger.Warn("rejected batch", "subject", m.Subject(), "reason", rej.reason, "err", rej.err)
	if rej.poison {
		r.deadLetter(ctx, m, res.agency, rej.Error())
	}
	_ = m.Term()
	r.answer(res.verdict(http.StatusBadRequest, rej.Error()))
}

// retry hands a message back for another try after a temporary failure;
// after maxDeliveries tries it goes to the dead letters instead.
func (r *Router) retry(ctx context.Context, m jetstream.Msg, res *result, err error) {
	if bus.Deliveries(m) >= maxDeliveries {
		agency := ""
		if res != nil {
			agency = res.agency
		}
		r.deadLetter(ctx, m, agency, fmt.Sprintf("not routed after %d tries: %v", maxDeliveries, err))
		_ = m.Term()
		return
	}
	r.logger.Warn("route failed, will retry", "subject", m.Subject(), "err", err)
	_ = m.NakWithDelay(time.Second)
}

func (r *Router) deadLetter(ctx context.Context, m jetstream.Msg, agency, reason string) {
	if err := r.opts.Bus.MoveToDeadLetter(ctx, agency, bus.StageRouter, reason, m); err != nil {
		r.logger.Error("dead letter not stored", "subject", m.Subject(), "err", err)
	}
}

// answer publishes a verdict to the push receiver waiting for it.
func (r *Router) answer(v *verdict) {
	if v == nil {
		return
	}
	if err := r.opts.Bus.Notify(v.subject, v.v.Encode()); err != nil {
		r.logger.Debug("publish verdict", "err", err)
	}
}

// msgID makes the output's JetStream de-duplication id from the input's
// stream position, so a redelivered input is not stored twice.
func msgID(m jetstream.Msg) string {
	return "ingest-" + strconv.FormatUint(bus.StreamSeq(m), 10)
}

// rejection is a batch that can never be routed.
type rejection struct {
	reason string
	err    error
	// poison: the message itself is broken (undecodable, too large); it
	// goes to the dead letters. Otherwise its source is refused.
	poison bool
}

func (e *rejection) Error() string { return e.reason + ": " + e.err.Error() }

func reject(reason string, format string, args ...any) error {
	return &rejection{reason: reason, err: fmt.Errorf(format, args...)}
}

func poison(reason string, format string, args ...any) error {
	return &rejection{reason: reason, err: fmt.Errorf(format, args...), poison: true}
}

// verdict is an answer owed to a push receiver waiting on its batch.
type verdict struct {
	subject string
	v       bus.Verdict
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
	return &verdict{subject: res.verdictSub, v: res.outcome.verdict()}
}

// route turns one ingest message into its agency's messages.
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
		res.agency = src.agency.ID
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
			return res, poison("undecodable", "%v", err)
		}
		redelivered := bus.Redelivered(m)
		// Pushes through another process's collector were validated at
		// its door; NATS and scrape sources have none: checked here.
		if src.pushed() {
			r.labelAndLimit(src, wr, &res.outcome, redelivered)
		} else {
			r.validator.Validate(src.agency, wr, false, &res.outcome)
			r.labelAndLimit(src, wr, &res.outcome, redelivered)
		}
		r.countDiscards(src.agency.ID, &res.outcome)
		if len(wr.Timeseries) == 0 {
			return res, nil
		}
		if res.outs, err = r.encode(ctx, src.agency.ID, wr); err != nil {
			return res, poison("unencodable", "%v", err)
		}
		res.samples = res.outcome.accepted
		return res, nil
	case bus.KindAlerts:
		// A redelivered message's sender may have had its 2xx already
		// (verdict timeout): what was durable is routed, whatever the rate.
		outs, err := r.routeAlerts(ctx, cat, src, m.Data(), &res.outcome, !bus.Redelivered(m))
		if err != nil {
			return res, err
		}
		res.outs = outs
		return res, nil
	default:
		return res, reject("unknown_kind", "no route for kind %q", kind)
	}
}

// labelAndLimit labels a validated batch for its agency and applies the
// agency's label limits and its rate, series and ordering limits, in
// place. Pushes are all or nothing: a series over a label limit refuses
// the batch with a 400 naming it, so nothing is half-written; scraped and
// NATS batches lose only the offending series.
func (r *Router) labelAndLimit(src source, wr *prompb.WriteRequest, o *outcome, redelivered bool) {
	l := relabelWriteRequest(wr, src)
	if l.renamed > 0 {
		r.metrics.renamed.WithLabelValues(src.agency.ID).Add(float64(l.renamed))
	}
	lim := src.agency.EffectiveLimits()
	strict := src.pushed()
	kept := wr.Timeseries[:0]
	for _, ts := range wr.Timeseries {
		n := len(ts.Samples) + len(ts.Histograms)
		if reason, problem := checkLimits(&ts, lim); reason != "" {
			if strict {
				o.discard(reason, samplesOf(wr), http.StatusBadRequest, problem)
				wr.Timeseries = wr.Timeseries[:0]
				return
			}
			o.discard(reason, n, http.StatusBadRequest, problem)
			continue
		}
		kept = append(kept, ts)
	}
	wr.Timeseries = kept
	r.limiter.admit(src.agency, wr, o, redelivered)
}

func (r *Router) countDiscards(agency string, o *outcome) {
	for reason, n := range o.discarded {
		r.metrics.discarded.WithLabelValues(agency, reason).Add(float64(n))
	}
}

// Split bounds: a message must fit the server's payload limit, and decode
// within bus.MaxDecodedBatch.
const (
	payloadHeadroom = 16 << 10
	maxRawPerMsg    = bus.MaxDecodedBatch / 2
)

// encode encodes wr as one or more messages on the agency's metrics
// subject, each small enough for the bus: a batch that fits the push limit
// but not the bus once labelled is split, never refused or lost.
func (r *Router) encode(ctx context.Context, agency string, wr *prompb.WriteRequest) ([]*nats.Msg, error) {
	return r.encodeWith(ctx, agency, wr, func() []byte { return nil })
}

// payload is a recycled message buffer, or nil.
func (r *Router) payload() []byte {
	if b, ok := r.payloads.Get().(*[]byte); ok {
		return *b
	}
	return nil
}

// encodeWith is encode with the message buffers buf gives.
func (r *Router) encodeWith(ctx context.Context, agency string, wr *prompb.WriteRequest, buf func() []byte) ([]*nats.Msg, error) {
	enc := r.encoders.Get().(*bus.MetricsEncoder)
	defer r.encoders.Put(enc)
	limit := r.opts.Bus.MaxPayload() - payloadHeadroom
	var out []*nats.Msg
	var split func(ts []prompb.TimeSeries) error
	split = func(ts []prompb.TimeSeries) error {
		sub := prompb.WriteRequest{Timeseries: ts}
		if sub.Size() <= maxRawPerMsg {
			data, err := enc.EncodeTo(buf(), &sub)
			if err != nil {
				return err
			}
			if len(data) <= limit {
				msg := &nats.Msg{Subject: bus.AgencySubject(agency, bus.KindMetrics), Data: data, Header: nats.Header{}}
				bus.InjectTrace(ctx, msg)
				out = append(out, msg)
				return nil
			}
		}
		if len(ts) == 1 {
			return fmt.Errorf("series %s alone is larger than the bus allows (%d bytes)", describe(ts[0].Labels), limit)
		}
		if err := split(ts[:len(ts)/2]); err != nil {
			return err
		}
		return split(ts[len(ts)/2:])
	}
	if err := split(wr.Timeseries); err != nil {
		return nil, err
	}
	return out, nil
}
