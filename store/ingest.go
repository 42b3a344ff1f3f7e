package store

import (
	"context"
	"errors"
	"strings"
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

	dec bus.MetricsDecoder
	// refs caches the head series of encoded label sets, as Prometheus's
	// scrape cache does: a known series is appended by reference, without
	// building its labels. Reset hourly so that series gone from the head
	// do not accumulate.
	refs      map[string]storage.SeriesRef
	refsSince time.Time
}

// refsMaxAge is how long the series cache lives before it is rebuilt.
const refsMaxAge = time.Hour

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

// appendBatch appends a batch of messages in one TSDB transaction. When the
// transaction fails (disk full, head closing), the batch is retried here,
// in place, until it succeeds: handing it back to JetStream would let
// later batches overtake it, and its samples would then be refused as out
// of order. The messages are kept alive (InProgress) meanwhile.
func (c *consumer) appendBatch(ctx context.Context, batch []jetstream.Msg, wr *prompb.WriteRequest) {
	id := c.adb.id
	ctx, span := c.s.tracer.Start(bus.ExtractTrace(ctx, batch[0].Headers()), "store.append",
		trace.WithAttributes(attribute.String("agency", id), attribute.Int("messages", len(batch))))
	defer span.End()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.tryAppend(ctx, batch, wr, span)
		if err == nil {
			if attempt > 1 {
				c.s.logger.Info("append succeeded again", "agency", id, "attempts", attempt)
			}
			return
		}
		c.s.metrics.appendFailures.WithLabelValues(id).Inc()
		span.SetStatus(codes.Error, err.Error())
		if attempt == 1 || attempt%50 == 0 {
			c.s.logger.Warn("append failed; retrying the batch in order", "agency", id, "attempt", attempt, "err", err)
		}
		if ctx.Err() != nil {
			c.nakAll(batch, err)
			return
		}
		for _, m := range batch {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
			c.nakAll(batch, err)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// tryAppend appends the batch in one transaction and acks its messages, or
// returns the error that made the transaction fail.
func (c *consumer) tryAppend(ctx context.Context, batch []jetstream.Msg, wr *prompb.WriteRequest, span trace.Span) error {
	id := c.adb.id
	app := c.adb.db.Appender(ctx)
	var (
		b        labels.ScratchBuilder
		appended int
		good     = batch[:0:0]
	)
	for _, m := range batch {
		if err := c.dec.Decode(m.Data(), wr); err != nil {
			c.s.metrics.badBatches.WithLabelValues(id).Inc()
			c.s.logger.Error("dropping undecodable metrics batch", "agency", id, "err", err)
			_ = m.Term()
			continue
		}
		n, err := c.appendRequest(app, wr, &b)
		if err != nil {
			// The head refused the transaction itself.
			_ = app.Rollback()
			return err
		}
		appended += n
		good = append(good, m)
	}
	if err := app.Commit(); err != nil {
		return err
	}
	for _, m := range good {
		_ = m.Ack()
	}
	c.s.metrics.appended.WithLabelValues(id).Add(float64(appended))
	if c.s.opts.Meter != nil && !c.s.opts.NoSampleMetering {
		c.s.opts.Meter.Add(id, usageSamples, float64(appended))
	}
	span.SetAttributes(attribute.Int("samples", appended))
	return nil
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
	if c.refs == nil || time.Since(c.refsSince) > refsMaxAge {
		c.refs, c.refsSince = map[string]storage.SeriesRef{}, time.Now()
	}
	n := 0
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		key := ""
		if i < len(c.dec.Keys) {
			key = c.dec.Keys[i]
		}
		ref, cached := c.refs[key]
		cached = cached && key != ""
		var lset labels.Labels
		labelsOf := func() labels.Labels {
			if lset.IsEmpty() {
				// The decoder's strings are reused: the head must keep a
				// copy, which stringlabels' builder makes already.
				lset = ts.ToLabels(b, nil)
				if labels.ImplementationName != "stringlabels" {
					lset = lset.Copy()
				}
			}
			return lset
		}
		if !cached {
			labelsOf()
		}
		var err error
		for _, s := range ts.Samples {
			var got storage.SeriesRef
			got, err = app.Append(ref, lset, s.Timestamp, s.Value)
			if err != nil && cached {
				// The cached series left the head: append by labels.
				delete(c.refs, key)
				cached = false
				got, err = app.Append(0, labelsOf(), s.Timestamp, s.Value)
			}
			if c.sampleErr(err) != nil {
				return n, err
			}
			if err == nil {
				n++
				ref = got
			}
		}
		for _, h := range ts.Histograms {
			lset := labelsOf()
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
		if key != "" && ref != 0 && !cached {
			c.refs[strings.Clone(key)] = ref
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
