package store

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
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

// maxTxBytes bounds one TSDB transaction by the encoded size of its
// messages (about 20,000 samples): a commit of a whole fetched batch of new
// series wrote WAL records of tens of megabytes, whose buffers the head
// kept.
const maxTxBytes = 256 << 10

// consumer appends one agency's metrics subject to its TSDB. Messages are
// acked only after the samples are committed (and so in the WAL): a crash
// before that redelivers them, and the TSDB ignores samples it already has.
type consumer struct {
	s   *Store
	adb *agencyDB
	dec bus.MetricsDecoder
}

// refCache caches the head series of label sets, as Prometheus's scrape
// cache does: a known series is appended by reference, without building
// its labels. It is keyed by two independent 64-bit hashes of the labels
// (16 bytes a series instead of the labels themselves; a collision of both
// needs ~2^64 series), sharded for the concurrent appends of the
// write-through path, and reset hourly so that series gone from the head
// do not accumulate.
type refCache struct {
	shards [64]refShard
}

type refShard struct {
	mu    sync.RWMutex
	m     map[seriesKey]storage.SeriesRef
	since time.Time
}

// refsMaxAge is how long a cache shard lives before it is rebuilt.
const refsMaxAge = time.Hour

// seriesKey identifies a series by its labels.
type seriesKey [2]uint64

// Seeds of the two hashes; the cache lives in memory only, so they may
// change with every start.
var keySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func keyOf(ls []prompb.Label) seriesKey {
	var k seriesKey
	for i := range k {
		var h maphash.Hash
		h.SetSeed(keySeeds[i])
		for _, l := range ls {
			_, _ = h.WriteString(l.Name)
			_ = h.WriteByte(0xff)
			_, _ = h.WriteString(l.Value)
			_ = h.WriteByte(0xff)
		}
		k[i] = h.Sum64()
	}
	return k
}

func (c *refCache) shard(k seriesKey) *refShard { return &c.shards[k[0]%uint64(len(c.shards))] }

func (c *refCache) get(k seriesKey) (storage.SeriesRef, bool) {
	sh := c.shard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ref, ok := sh.m[k]
	return ref, ok
}

func (c *refCache) set(k seriesKey, ref storage.SeriesRef) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil || time.Since(sh.since) > refsMaxAge {
		sh.m, sh.since = map[seriesKey]storage.SeriesRef{}, time.Now()
	}
	sh.m[k] = ref
}

// len is the number of cached series.
func (c *refCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}

// each calls f with every cached key.
func (c *refCache) each(f func(seriesKey)) {
	var keys []seriesKey
	for i := range c.shards {
		c.shards[i].mu.RLock()
		for k := range c.shards[i].m {
			keys = append(keys, k)
		}
		c.shards[i].mu.RUnlock()
	}
	for _, k := range keys {
		f(k)
	}
}

func (c *refCache) drop(k seriesKey) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.m, k)
}

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
	for len(batch) > 0 {
		n, size := 1, len(batch[0].Data())
		for n < len(batch) && size+len(batch[n].Data()) <= maxTxBytes {
			size += len(batch[n].Data())
			n++
		}
		c.appendTx(ctx, batch[:n], wr)
		batch = batch[n:]
	}
}

// appendTx appends messages in one transaction, retrying it until it
// succeeds or ctx ends.
func (c *consumer) appendTx(ctx context.Context, batch []jetstream.Msg, wr *prompb.WriteRequest) {
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
	var skipped []jetstream.Msg
	for _, m := range batch {
		if tok := m.Headers().Get(bus.HeaderThrough); tok != "" && c.s.through.consumed(ctx, tok) {
			skipped = append(skipped, m) // appended in the request already
			continue
		}
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
		appended += c.adb.appendRequest(c.s, app, wr, &b)
		good = append(good, m)
	}
	if err := app.Commit(); err != nil {
		return err
	}
	for _, m := range skipped {
		_ = m.Ack()
	}
	for _, m := range good {
		_ = m.Ack()
	}
	c.s.appended(id, appended)
	if len(good) > 0 && c.adb.degraded.Load() && caughtUp(batch[len(batch)-1]) {
		// Everything stored so far is appended: pushes may be appended in
		// the request again.
		c.adb.degraded.Store(false)
		c.s.logger.Info("consumer caught up; appends in the request resume", "agency", id)
	}
	span.SetAttributes(attribute.Int("samples", appended))
	return nil
}

// caughtUp reports whether m was the last message of its consumer.
func caughtUp(m jetstream.Msg) bool {
	md, err := m.Metadata()
	return err == nil && md.NumPending == 0
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
// Only the commit can fail the transaction. Safe for concurrent use with
// different appenders.
func (adb *agencyDB) appendRequest(s *Store, app storage.Appender, wr *prompb.WriteRequest, b *labels.ScratchBuilder) int {
	n := 0
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		key := keyOf(ts.Labels)
		ref, cached := adb.refs.get(key)
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
		for _, smp := range ts.Samples {
			var got storage.SeriesRef
			got, err = app.Append(ref, lset, smp.Timestamp, smp.Value)
			if err != nil && cached {
				// The cached series left the head: append by labels.
				adb.refs.drop(key)
				cached = false
				got, err = app.Append(0, labelsOf(), smp.Timestamp, smp.Value)
			}
			adb.sampleErr(s, err)
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
			adb.sampleErr(s, err)
			if err == nil {
				n++
			}
		}
		if ref != 0 && !cached {
			adb.refs.set(key, ref)
		}
	}
	return n
}

// sampleErr counts a sample the head refused, by reason.
func (adb *agencyDB) sampleErr(s *Store, err error) {
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
		s.logger.Warn("sample refused by the TSDB", "agency", adb.id, "err", err)
	}
	s.metrics.discarded.WithLabelValues(adb.id, reason).Inc()
}
