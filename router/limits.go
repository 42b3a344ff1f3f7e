package router

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/prompb"
	"golang.org/x/time/rate"

	"github.com/samdrift/samdrift/catalogue"
)

// Discard reasons, the reason label of samdrift_discarded_samples_total.
// They are named after the limit or rule that refused the samples.
const (
	reasonRateLimited     = "rate_limited"
	reasonSeriesLimit     = "max_global_series_per_user"
	reasonLabelNames      = "max_label_names_per_series"
	reasonLabelValue      = "max_label_value_length"
	reasonInvalidLabels   = "invalid_labels"
	reasonOutOfOrder      = "out_of_order"
	seriesIdleEviction    = time.Hour
	seriesEvictionPeriod  = 5 * time.Minute
	maxProblemDescription = 200
)

// limiter enforces the catalogue's per-agency limits. It lives in the router,
// the one place that knows every batch's agency, so an agency that pushes too
// much is stopped before its data reaches the store and cannot slow others.
type limiter struct {
	now func() time.Time

	mu        sync.Mutex
	agencies  map[string]*agencyState
	lastEvict time.Time
}

type agencyState struct {
	limits catalogue.Limits
	rate   *rate.Limiter
	// series maps a series' label hash to the newest timestamp routed for
	// it: it counts active series and finds out-of-order samples.
	series map[uint64]int64
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, agencies: map[string]*agencyState{}}
}

func (l *limiter) state(a *catalogue.Agency) *agencyState {
	lim := a.EffectiveLimits()
	s := l.agencies[a.ID]
	if s == nil {
		s = &agencyState{series: map[uint64]int64{}}
		l.agencies[a.ID] = s
	}
	if s.rate == nil || s.limits != lim {
		s.limits = lim
		s.rate = rate.NewLimiter(rate.Limit(lim.IngestionRate), lim.IngestionBurstSize)
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

// outcome is what the limits did to one batch.
type outcome struct {
	status     int // 200, 400 or 429 for the sender
	message    string
	retryAfter time.Duration
	accepted   int
	discarded  map[string]int
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

// checkRaw validates the labels a sender wrote, before relabelling. It
// returns a description of the first problem, or "".
func checkRaw(ts *prompb.TimeSeries) string {
	if len(ts.Labels) == 0 {
		return "series without labels"
	}
	hasName := false
	for _, l := range ts.Labels {
		switch {
		case l.Name == "":
			return "empty label name"
		case !utf8.ValidString(l.Name):
			return fmt.Sprintf("label name %q is not valid UTF-8", l.Name)
		case l.Value == "":
			return fmt.Sprintf("empty value for label %q in series %s", l.Name, describe(ts.Labels))
		case !utf8.ValidString(l.Value):
			return fmt.Sprintf("value of label %q is not valid UTF-8", l.Name)
		}
		if l.Name == "__name__" {
			hasName = true
		}
	}
	if !hasName {
		return fmt.Sprintf("series %s has no metric name", describe(ts.Labels))
	}
	// Duplicates, without allocating: neighbours when sorted (as remote
	// write requires), else every pair (series have few labels).
	ls := ts.Labels
	sorted := true
	for i := 1; i < len(ls); i++ {
		if ls[i].Name == ls[i-1].Name {
			return fmt.Sprintf("duplicate label %q in series %s", ls[i].Name, describe(ls))
		}
		if ls[i].Name < ls[i-1].Name {
			sorted = false
		}
	}
	if !sorted {
		for i := range ls {
			for j := i + 1; j < len(ls); j++ {
				if ls[i].Name == ls[j].Name {
					return fmt.Sprintf("duplicate label %q in series %s", ls[i].Name, describe(ls))
				}
			}
		}
	}
	return ""
}

// checkLimits checks the stored form of a series against the agency's label
// limits. It returns the reason and a description, or "".
func checkLimits(ts *prompb.TimeSeries, lim catalogue.Limits) (string, string) {
	if len(ts.Labels) > lim.MaxLabelNamesPerSeries {
		return reasonLabelNames, fmt.Sprintf("series %s has %d labels, more than max_label_names_per_series (%d)", describe(ts.Labels), len(ts.Labels), lim.MaxLabelNamesPerSeries)
	}
	for _, l := range ts.Labels {
		if len(l.Value) > lim.MaxLabelValueLength {
			return reasonLabelValue, fmt.Sprintf("value of label %q in series %s is %d bytes, longer than max_label_value_length (%d)", l.Name, describe(ts.Labels), len(l.Value), lim.MaxLabelValueLength)
		}
	}
	return "", ""
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
		o.discard(reasonRateLimited, n, 0, "")
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
				o.discard(reasonSeriesLimit, len(ts.Samples)+len(ts.Histograms), 400,
					fmt.Sprintf("agency %q has reached max_global_series_per_user (%d): new series such as %s refused", a.ID, s.limits.MaxGlobalSeriesPerUser, describe(ts.Labels)))
				continue
			}
			last = math.MinInt64
		}
		samples := ts.Samples[:0]
		for _, smp := range ts.Samples {
			if smp.Timestamp < last && !redelivered {
				o.discard(reasonOutOfOrder, 1, 400, fmt.Sprintf("out-of-order sample for series %s: timestamp %d is older than %d", describe(ts.Labels), smp.Timestamp, last))
				continue
			}
			last = max(last, smp.Timestamp)
			samples = append(samples, smp)
		}
		ts.Samples = samples
		hists := ts.Histograms[:0]
		for _, hs := range ts.Histograms {
			if hs.Timestamp < last && !redelivered {
				o.discard(reasonOutOfOrder, 1, 400, fmt.Sprintf("out-of-order histogram for series %s", describe(ts.Labels)))
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
