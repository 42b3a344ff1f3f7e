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
}

// Router routes ingested batches to their agency.
type Router struct {
	opts    Options
	logger  *slog.Logger
	tracer  trace.Tracer
	metrics *metrics
}

// New returns a router.
func New(o Options) *Router {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	return &Router{
		opts:    o,
		logger:  o.Logger,
		tracer:  o.Tracer.Tracer("github.com/samdrift/samdrift/router"),
		metrics: newMetrics(o.Registerer),
	}
}

// Run consumes ingest.> until ctx is done.
func (r *Router) Run(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	cons, err := r.opts.Bus.JS.CreateOrUpdateConsumer(cctx, bus.StreamIngest, jetstream.ConsumerConfig{
		Durable:       Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
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
	in  jetstream.Msg
	fut jetstream.PubAckFuture
}

// routeBatch republishes every message of the batch asynchronously, then
// acks each input whose output JetStream confirmed.
func (r *Router) routeBatch(ctx context.Context, batch []jetstream.Msg) {
	cat := r.opts.Catalogue.Get()
	wr := &prompb.WriteRequest{}
	var outs []pending
	for _, m := range batch {
		out, err := r.route(ctx, cat, m, wr)
		if err != nil {
			var rej *rejection
			if errors.As(err, &rej) {
				r.metrics.rejected.WithLabelValues(rej.reason).Inc()
				r.logger.Warn("rejected batch", "subject", m.Subject(), "reason", rej.reason, "err", rej.err)
				_ = m.Term()
				continue
			}
			r.logger.Warn("route failed, will retry", "subject", m.Subject(), "err", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		if out == nil {
			_ = m.Ack()
			continue
		}
		fut, err := r.opts.Bus.JS.PublishMsgAsync(out, jetstream.WithMsgID(msgID(m)))
		if err != nil {
			r.logger.Warn("publish failed, will retry", "subject", out.Subject, "err", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		outs = append(outs, pending{in: m, fut: fut})
	}
	timeout := time.After(30 * time.Second)
	for _, p := range outs {
		select {
		case <-p.fut.Ok():
			_ = p.in.Ack()
		case err := <-p.fut.Err():
			r.logger.Warn("publish not acknowledged, will retry", "subject", p.fut.Msg().Subject, "err", err)
			_ = p.in.NakWithDelay(time.Second)
		case <-timeout:
			_ = p.in.NakWithDelay(time.Second)
		case <-ctx.Done():
			return // unacked inputs are redelivered
		}
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

// route turns one ingest message into its agency message, or nil if there
// is nothing to forward.
func (r *Router) route(ctx context.Context, cat *catalogue.Catalogue, m jetstream.Msg, wr *prompb.WriteRequest) (*nats.Msg, error) {
	kind, source, ok := bus.ParseIngestSubject(m.Subject())
	if !ok {
		return nil, reject("bad_subject", "subject %q is not ingest.<kind>.<source>", m.Subject())
	}
	src, err := resolve(cat, source)
	if err != nil {
		return nil, err
	}
	ctx, span := r.tracer.Start(bus.ExtractTrace(ctx, m.Headers()), "router.route",
		trace.WithAttributes(attribute.String("agency", src.agency.ID), attribute.String("kind", kind)))
	defer span.End()

	switch kind {
	case bus.KindMetrics:
		if err := bus.DecodeMetrics(m.Data(), wr); err != nil {
			span.SetStatus(codes.Error, err.Error())
			return nil, reject("undecodable", "%v", err)
		}
		n := relabelWriteRequest(wr, src)
		if len(wr.Timeseries) == 0 {
			return nil, nil
		}
		data, err := bus.EncodeMetrics(wr)
		if err != nil {
			return nil, err
		}
		r.metrics.samples.WithLabelValues(src.agency.ID).Add(float64(n))
		r.metrics.batches.WithLabelValues(src.agency.ID, kind).Inc()
		out := &nats.Msg{Subject: bus.AgencySubject(src.agency.ID, kind), Data: data, Header: nats.Header{}}
		bus.InjectTrace(ctx, out)
		return out, nil
	default:
		return nil, reject("unknown_kind", "no route for kind %q", kind)
	}
}
