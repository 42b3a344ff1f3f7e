package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/model/histogram"
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
	s   *Store
	adb *agencyDB

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

func newConsumer(s *Store, adb *agencyDB) *consumer {
	return &consumer{s: s, adb: adb}
}

// spec is the agency's durable consumer of its metrics subject.
func (c *consumer) spec() bus.ConsumerSpec {
	var inactive time.Duration
	if c.s.opts.Instance != "" {
		inactive = InstanceConsumerTTL
	}
	return bus.ConsumerSpec{
		Stream: bus.StreamMetrics, Durable: c.s.consumerName(c.adb.id),
		Filter:            bus.AgencySubject(c.adb.id, bus.KindMetrics),
		InactiveThreshold: inactive,
		// A crashed process's batches come back after this.
		AckWait:       20 * time.Second,
		MaxAckPending: 4 * maxBatchMessages,
	}
}

func (c *consumer) run(ctx context.Context) {
	wr := &prompb.WriteRequest{}
	err := c.s.opts.Bus.Consume(ctx, c.spec(), maxBatchMessages, c.s.logger.With("agency", c.adb.id), func(ctx context.Context, batch []jetstream.Msg) {
		c.appendBatch(ctx, batch, wr)
	})
	if err != nil {
		c.s.logger.Error("start metrics consumer", "agency", c.adb.id, "err", err)
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
			// A message no retry can cure: to the agency's dead letters,
			// and the stream moves on.
			c.s.metrics.badBatches.WithLabelValues(id).Inc()
			c.s.logger.Error("undecodable metrics batch moved to the dead letters", "agency", id, "err", err)
			if err := c.s.opts.Bus.MoveToDeadLetter(ctx, id, bus.StageStore, "undecodable metrics batch: "+err.Error(), m); err != nil {
				c.s.logger.Error("dead letter not stored", "agency", id, "err", err)
				continue // retried with the batch
			}
			_ = m.Term()
			continue
		}
		appended += c.appendRequest(app, wr, &b)
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

// appendRequest appends every sample of wr and returns how many the head
// took. What the head refuses (out of order, too old, duplicate, an invalid
// histogram) is counted by reason and skipped, as Prometheus does: one bad
// sample never holds back the rest of the batch or the batches after it.
// Only the commit can fail the transaction.
func (c *consumer) appendRequest(app storage.Appender, wr *prompb.WriteRequest, b *labels.ScratchBuilder) int {
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
			c.sampleErr(err)
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
			c.sampleErr(err)
			if err == nil {
				n++
			}
		}
		if key != "" && ref != 0 && !cached {
			c.refs[strings.Clone(key)] = ref
		}
	}
	return n
}

// sampleErr counts a sample the head refused, by reason.
func (c *consumer) sampleErr(err error) {
	if err == nil {
		return
	}
	reason := "other"
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
	case errors.Is(err, histogram.ErrHistogramCountMismatch), errors.Is(err, histogram.ErrHistogramCountNotBigEnough),
		errors.Is(err, histogram.ErrHistogramNegativeBucketCount), errors.Is(err, histogram.ErrHistogramSpanNegativeOffset),
		errors.Is(err, histogram.ErrHistogramSpansBucketsMismatch):
		reason = "invalid_native_histogram"
	}
	if reason == "other" {
		c.s.logger.Warn("sample refused by the TSDB", "agency", c.adb.id, "err", err)
	}
	c.s.metrics.discarded.WithLabelValues(c.adb.id, reason).Inc()
}
