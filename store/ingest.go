package store

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/samdrift/samdrift/bus"
)

const maxBatchMessages = 256

// consumer appends one agency's metrics subject to its TSDB. Messages are
// acked only after the samples are committed (and so in the WAL): a crash
// before that redelivers them, and the TSDB ignores samples it already has.
type consumer struct {
	s    *Store
	adb  *agencyDB
	cons jetstream.Consumer
	ch   chan jetstream.Msg
}

func newConsumer(ctx context.Context, s *Store, adb *agencyDB) (*consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var inactive time.Duration
	if s.opts.Instance != "" {
		inactive = InstanceConsumerTTL
	}
	cons, err := s.opts.Bus.JS.CreateOrUpdateConsumer(cctx, bus.StreamMetrics, jetstream.ConsumerConfig{
		Durable:           s.consumerName(adb.id),
		InactiveThreshold: inactive,
		FilterSubject:     bus.AgencySubject(adb.id, bus.KindMetrics),
		AckPolicy:         jetstream.AckExplicitPolicy,
		// A crashed process's batches come back after this.
		AckWait:       20 * time.Second,
		MaxAckPending: 4 * maxBatchMessages,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	return &consumer{s: s, adb: adb, cons: cons, ch: make(chan jetstream.Msg, maxBatchMessages)}, nil
}

func (c *consumer) run(ctx context.Context) {
	cc, err := c.cons.Consume(func(m jetstream.Msg) {
		select {
		case c.ch <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*maxBatchMessages), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			c.s.logger.Debug("metrics consumer", "agency", c.adb.id, "err", err)
		}
	}))
	if err != nil {
		c.s.logger.Error("start metrics consumer", "agency", c.adb.id, "err", err)
		return
	}
	defer cc.Stop()
	batch := make([]jetstream.Msg, 0, maxBatchMessages)
	wr := &prompb.WriteRequest{}
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case m := <-c.ch:
			batch = append(batch, m)
		}
	drain:
		for len(batch) < maxBatchMessages {
			select {
			case m := <-c.ch:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		c.appendBatch(ctx, batch, wr)
	}
}

// appendBatch appends a batch of messages in one TSDB transaction.
func (c *consumer) appendBatch(ctx context.Context, batch []jetstream.Msg, wr *prompb.WriteRequest) {
	id := c.adb.id
	ctx, span := c.s.tracer.Start(bus.ExtractTrace(ctx, batch[0].Headers()), "store.append",
		trace.WithAttributes(attribute.String("agency", id), attribute.Int("messages", len(batch))))
	defer span.End()

	app := c.adb.db.Appender(ctx)
	var (
		b        labels.ScratchBuilder
		appended int
		good     = batch[:0:0]
	)
	for _, m := range batch {
		if err := bus.DecodeMetrics(m.Data(), wr); err != nil {
			c.s.metrics.badBatches.WithLabelValues(id).Inc()
			c.s.logger.Error("dropping undecodable metrics batch", "agency", id, "err", err)
			_ = m.Term()
			continue
		}
		n, err := c.appendRequest(app, wr, &b)
		if err != nil {
			// The head refused the transaction itself (closed, not ready):
			// give every message back for redelivery.
			_ = app.Rollback()
			c.nakAll(batch, err)
			span.SetStatus(codes.Error, err.Error())
			return
		}
		appended += n
		good = append(good, m)
	}
	if err := app.Commit(); err != nil {
		c.nakAll(batch, err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	for _, m := range good {
		_ = m.Ack()
	}
	c.s.metrics.appended.WithLabelValues(id).Add(float64(appended))
	if c.s.opts.Meter != nil && !c.s.opts.NoSampleMetering {
		c.s.opts.Meter.Add(id, usageSamples, float64(appended))
	}
	span.SetAttributes(attribute.Int("samples", appended))
}

func (c *consumer) nakAll(batch []jetstream.Msg, err error) {
	c.s.logger.Warn("append failed, batch will be redelivered", "agency", c.adb.id, "err", err)
	for _, m := range batch {
		_ = m.NakWithDelay(time.Second)
	}
}

// appendRequest appends every sample of wr. Per-sample rejections (out of
// order, too old, duplicate) are counted and skipped, as Prometheus does; an
// error is returned only when the appender itself fails.
func (c *consumer) appendRequest(app storage.Appender, wr *prompb.WriteRequest, b *labels.ScratchBuilder) (int, error) {
	n := 0
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		lset := ts.ToLabels(b, nil)
		var ref storage.SeriesRef
		var err error
		for _, s := range ts.Samples {
			ref, err = app.Append(ref, lset, s.Timestamp, s.Value)
			if c.sampleErr(err) != nil {
				return n, err
			}
			if err == nil {
				n++
			}
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				ref, err = app.AppendHistogram(ref, lset, h.Timestamp, nil, h.ToFloatHistogram())
			} else {
				ref, err = app.AppendHistogram(ref, lset, h.Timestamp, h.ToIntHistogram(), nil)
			}
			if c.sampleErr(err) != nil {
				return n, err
			}
			if err == nil {
				n++
			}
		}
	}
	return n, nil
}

// sampleErr counts a per-sample rejection and returns nil for it; any other
// error is returned as fatal for the transaction.
func (c *consumer) sampleErr(err error) error {
	if err == nil {
		return nil
	}
	reason := ""
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		reason = "out_of_order"
	case errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrTooOldSample):
		reason = "too_old"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		reason = "duplicate_timestamp"
	case errors.Is(err, storage.ErrNativeHistogramsDisabled):
		reason = "native_histograms_disabled"
	case errors.Is(err, tsdb.ErrInvalidSample):
		reason = "invalid_labels"
	}
	if reason == "" {
		return err
	}
	c.s.metrics.discarded.WithLabelValues(c.adb.id, reason).Inc()
	return nil
}
