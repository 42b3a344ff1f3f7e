package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// The write-through path of the single-process default: a push is decoded
// once, by its receiver. The router labels and limits it and stores it
// durably on the agency's metrics subject — that is what a 2xx promises —
// and then, still in the request, the store appends the same decoded
// samples to the agency's TSDB (Append). The messages carry a token
// (bus header Samdrift-Through); the agency's consumer, meeting a token
// this process applied, acks the message without decoding it again.
//
// Nothing acknowledged depends on the in-request append: a message whose
// token is unknown (another process, a restart, an append that failed) is
// appended by the consumer as before, and samples appended twice are
// no-ops for the TSDB (same series, timestamp and value). After a failed
// in-request append the agency's pushes go through the consumer alone, in
// stream order, until it has caught up.

// throughNonce makes this process's tokens its own.
var throughNonce = func() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// throughTTL is how long an unconsumed token is kept: a consumer this far
// behind appends the message itself.
const throughTTL = 10 * time.Minute

type throughEntry struct {
	done    chan struct{}
	applied bool
	parts   int // messages that carry the token and are not consumed yet
	at      time.Time
}

// throughSet is the tokens of in-request appends not yet met by the
// consumer.
type throughSet struct {
	seq     atomic.Uint64
	mu      sync.Mutex
	entries map[string]*throughEntry
	swept   time.Time
}

func (t *throughSet) begin(parts int) string {
	tok := throughNonce + "-" + strconv.FormatUint(t.seq.Add(1), 36)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries == nil {
		t.entries = map[string]*throughEntry{}
	}
	if now.Sub(t.swept) > time.Minute {
		for k, e := range t.entries {
			if now.Sub(e.at) > throughTTL {
				delete(t.entries, k)
			}
		}
		t.swept = now
	}
	t.entries[tok] = &throughEntry{done: make(chan struct{}), parts: parts, at: now}
	return tok
}

// finish records the outcome of a token's in-request append.
func (t *throughSet) finish(tok string, applied bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[tok]; e != nil {
		select {
		case <-e.done:
		default:
			e.applied = applied
			close(e.done)
		}
	}
}

// throughWait bounds the consumer's wait for an append in the request; past
// it the consumer appends the message itself (twice is harmless).
const throughWait = 30 * time.Second

// consumed reports, for one message carrying tok, whether its samples were
// appended in the request (waiting for that append if it is under way). A
// token this process does not know means no.
func (t *throughSet) consumed(ctx context.Context, tok string) bool {
	t.mu.Lock()
	e := t.entries[tok]
	t.mu.Unlock()
	if e == nil {
		return false
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return false
	case <-time.After(throughWait):
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.parts--; e.parts <= 0 {
		delete(t.entries, tok)
	}
	return e.applied
}

func (t *throughSet) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Begin registers an in-request append of a push stored as parts messages
// and returns the token its messages carry (bus.HeaderThrough).
func (s *Store) Begin(parts int) string { return s.through.begin(parts) }

// Abort says the push of tok will not be appended in the request (it was
// not stored, or only partly): the consumer appends whatever was.
func (s *Store) Abort(tok string) { s.through.finish(tok, false) }

// Append appends a push the router has stored on the bus under tok to its
// agency's TSDB, in one transaction. It returns the samples appended; an
// error (or an agency whose consumer is catching up after one) leaves the
// messages to the consumer, which then appends them.
func (s *Store) Append(ctx context.Context, agency, tok string, wr *prompb.WriteRequest) (int, error) {
	s.mu.RLock()
	adb := s.dbs[agency]
	s.mu.RUnlock()
	if adb == nil || adb.degraded.Load() {
		s.through.finish(tok, false)
		return 0, nil
	}
	adb.appendMu.RLock()
	defer adb.appendMu.RUnlock()
	if adb.closed {
		s.through.finish(tok, false)
		return 0, nil
	}
	app := adb.db.Appender(ctx)
	var b labels.ScratchBuilder
	n := adb.appendRequest(s, app, wr, &b)
	if err := app.Commit(); err != nil {
		// The consumer takes over this push and every later one, in
		// order, until it has caught up.
		adb.degraded.Store(true)
		s.metrics.appendFailures.WithLabelValues(agency).Inc()
		s.logger.Warn("append in the request failed; the agency's consumer appends until it has caught up", "agency", agency, "err", err)
		s.through.finish(tok, false)
		return 0, err
	}
	s.through.finish(tok, true)
	s.appended(agency, n)
	return n, nil
}

// appended counts samples appended to an agency's TSDB.
func (s *Store) appended(agency string, n int) {
	s.metrics.appended.WithLabelValues(agency).Add(float64(n))
	if s.opts.Meter != nil && !s.opts.NoSampleMetering {
		s.opts.Meter.Add(agency, usageSamples, float64(n))
	}
}
