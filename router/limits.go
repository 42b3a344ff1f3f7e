package router

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/prompb"
	"golang.org/x/time/rate"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

const (
	seriesIdleEviction   = time.Hour
	seriesEvictionPeriod = 5 * time.Minute
)

// limiter enforces the catalogue's per-agency limits. It lives in the router,
// the one place that knows every batch's agency, so an agency that pushes too
// much is stopped before its data reaches the store and cannot slow others.
type limiter struct {
	now   func() time.Time
	peers func() int // routers sharing the limits (nil: this one alone)

	mu        sync.Mutex
	agencies  map[string]*agencyState
	lastEvict time.Time
}

type agencyState struct {
	limits catalogue.Limits
	rate   *rate.Limiter
	alerts *rate.Limiter
	// series maps a series' label hash to the newest timestamp routed for
	// it: it counts active series and finds out-of-order samples.
	series map[uint64]int64
}

func newLimiter(now func() time.Time, peers func() int) *limiter {
	return &limiter{now: now, peers: peers, agencies: map[string]*agencyState{}}
}

// share is this router's share of an agency's limits when n routers share
// them: the rates divided, the bursts too but never below one request's
// worth (a request over the burst could never pass).
func share(lim catalogue.Limits, n int) catalogue.Limits {
	if n <= 1 {
		return lim
	}
	lim.IngestionRate /= float64(n)
	lim.IngestionBurstSize = max(lim.IngestionBurstSize/n, min(lim.MaxSamplesPerRequest, lim.IngestionBurstSize))
	lim.AlertIngestionRate /= float64(n)
	lim.AlertIngestionBurstSize = max(lim.AlertIngestionBurstSize/n, min(lim.MaxAlertsPerRequest, lim.AlertIngestionBurstSize))
	return lim
}

func (l *limiter) state(a *catalogue.Agency) *agencyState {
	n := 1
	if l.peers != nil {
		n = l.peers()
	}
	lim := share(a.EffectiveLimits(), n)
	s := l.agencies[a.ID]
	if s == nil {
		s = &agencyState{series: map[uint64]int64{}}
		l.agencies[a.ID] = s
	}
	if s.rate == nil || s.limits != lim {
		s.limits = lim
		s.rate = rate.NewLimiter(rate.Limit(lim.IngestionRate), lim.IngestionBurstSize)
		s.alerts = rate.NewLimiter(rate.Limit(lim.AlertIngestionRate), lim.AlertIngestionBurstSize)
	}
	return s
}

// Peek reports, without taking anything, whether n samples of the agency
// would pass its rate limit now, and if not, when to retry. Push receivers in
// the same process use it to shed a flood before it reaches the bus.
func (l *limiter) Peek(a *catalogue.Agency, n int) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state(a)
	now := l.now()
	if n > s.limits.IngestionBurstSize {
		return false, 0
	}
	if s.rate.TokensAt(now) >= float64(n) {
		return true, 0
	}
	r := s.rate.ReserveN(now, n)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d
}

// admitAlerts takes n alerts of the agency's alert rate if they fit, and
// otherwise says when to retry.
func (l *limiter) admitAlerts(a *catalogue.Agency, n int) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state(a)
	now := l.now()
	if s.alerts.AllowN(now, n) {
		return true, 0
	}
	r := s.alerts.ReserveN(now, n)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	if !r.OK() || d == math.MaxInt64 {
		d = time.Minute
	}
	return false, d
}

// outcome is what the limits did to one batch.
type outcome struct {
	status     int // 200, 400 or 429 for the sender
	message    string
	retryAfter time.Duration
	accepted   int
	discarded  map[string]int
}

// verdict is what the sender of the batch is told: 200 with the samples
// accepted, else the worst refusal (400, 413 or 429 with when to retry).
func (o *outcome) verdict() bus.Verdict {
	st := o.status
	if st == 0 {
		st = http.StatusOK
	}
	return bus.Verdict{Status: st, Message: o.message, RetryAfter: o.retryAfter, Accepted: o.accepted}
}

func (o *outcome) discard(reason string, n int, status int, msg string) {
	if n == 0 {
		return
	}
	if o.discarded == nil {
		o.discarded = map[string]int{}
	}
	o.discarded[reason] += n
	if o.status < status {
		o.status, o.message = status, msg
	}
}

// admit applies the rate, series and ordering limits to the (relabelled,
// valid) series of wr, dropping what they refuse, in place.
//
// A redelivered batch (its first router died before acking it) may
// already have been answered 2xx, when the collector's wait for a verdict
// timed out: it is past the rate limit, and it is older than what other
// routers have routed since, so only the series limit applies; the store's
// out-of-order window takes its late samples.
func (l *limiter) admit(a *catalogue.Agency, wr *prompb.WriteRequest, o *outcome, redelivered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state(a)
	now := l.now()
	l.evict(now)

	n := 0
	for i := range wr.Timeseries {
		n += len(wr.Timeseries[i].Samples) + len(wr.Timeseries[i].Histograms)
	}
	if n == 0 {
		return
	}
	if !redelivered && !s.rate.AllowN(now, n) {
		r := s.rate.ReserveN(now, n)
		d := r.DelayFrom(now)
		r.CancelAt(now)
		if !r.OK() || d == math.MaxInt64 {
			d = time.Second
		}
		o.discard(ReasonRateLimited, n, 0, "")
		o.status = 429
		o.message = fmt.Sprintf("agency %q is over its ingestion_rate of %g samples/s (burst %d): %d samples refused", a.ID, s.limits.IngestionRate, s.limits.IngestionBurstSize, n)
		o.retryAfter = d
		wr.Timeseries = wr.Timeseries[:0]
		return
	}

	kept := wr.Timeseries[:0]
	for _, ts := range wr.Timeseries {
		h := hashLabels(ts.Labels)
		last, known := s.series[h]
		if !known {
			if len(s.series) >= s.limits.MaxGlobalSeriesPerUser {
				o.discard(ReasonSeriesLimit, len(ts.Samples)+len(ts.Histograms), 400,
					fmt.Sprintf("agency %q has reached max_global_series_per_user (%d): new series such as %s refused", a.ID, s.limits.MaxGlobalSeriesPerUser, describe(ts.Labels)))
				continue
			}
			last = math.MinInt64
		}
		samples := ts.Samples[:0]
		for _, smp := range ts.Samples {
			if smp.Timestamp < last && !redelivered {
				o.discard(ReasonOutOfOrder, 1, 400, fmt.Sprintf("out-of-order sample for series %s: timestamp %d is older than %d", describe(ts.Labels), smp.Timestamp, last))
				continue
			}
			last = max(last, smp.Timestamp)
			samples = append(samples, smp)
		}
		ts.Samples = samples
		hists := ts.Histograms[:0]
		for _, hs := range ts.Histograms {
			if hs.Timestamp < last && !redelivered {
				o.discard(ReasonOutOfOrder, 1, 400, fmt.Sprintf("out-of-order histogram for series %s", describe(ts.Labels)))
				continue
			}
			last = max(last, hs.Timestamp)
			hists = append(hists, hs)
		}
		ts.Histograms = hists
		if len(ts.Samples)+len(ts.Histograms) == 0 {
			continue
		}
		s.series[h] = last
		o.accepted += len(ts.Samples) + len(ts.Histograms)
		kept = append(kept, ts)
	}
	wr.Timeseries = kept
}

// activeSeries returns the number of series the router tracks per agency.
func (l *limiter) activeSeries() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.agencies))
	for id, s := range l.agencies {
		out[id] = len(s.series)
	}
	return out
}

// forget drops the state of agencies no longer in the catalogue.
func (l *limiter) forget(cat *catalogue.Catalogue) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.agencies {
		if cat.Agency(id) == nil {
			delete(l.agencies, id)
		}
	}
}

// evict forgets series that received nothing for seriesIdleEviction, as
// series leave a TSDB head.
func (l *limiter) evict(now time.Time) {
	if now.Sub(l.lastEvict) < seriesEvictionPeriod {
		return
	}
	l.lastEvict = now
	cutoff := now.Add(-seriesIdleEviction).UnixMilli()
	for _, s := range l.agencies {
		for h, last := range s.series {
			if last < cutoff {
				delete(s.series, h)
			}
		}
	}
}

var sep = []byte{0xff}

// hashLabels hashes sorted labels as labels.Labels.Hash does.
func hashLabels(ls []prompb.Label) uint64 {
	var d xxhash.Digest
	d.Reset()
	for _, l := range ls {
		_, _ = d.WriteString(l.Name)
		_, _ = d.Write(sep)
		_, _ = d.WriteString(l.Value)
		_, _ = d.Write(sep)
	}
	return d.Sum64()
}

// describe formats labels for a message, shortened.
func describe(ls []prompb.Label) string {
	var b strings.Builder
	name := ""
	for _, l := range ls {
		if l.Name == "__name__" {
			name = l.Value
		}
	}
	b.WriteString(name)
	b.WriteByte('{')
	first := true
	for _, l := range ls {
		if l.Name == "__name__" {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		fmt.Fprintf(&b, "%s=%q", l.Name, l.Value)
		if b.Len() > maxProblemDescription {
			b.WriteString(", …")
			break
		}
	}
	b.WriteByte('}')
	return b.String()
}
