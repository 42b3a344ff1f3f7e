package router

import (
	"fmt"
	"math"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/prompb"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/httpapi"
)

// Discard reasons: one set for every receiver (remote write, OTLP,
// scrapes, NATS), the reason label of samdrift_discarded_samples_total.
// They are named after the limit or rule that refused the samples, as
// Mimir's are.
const (
	ReasonRateLimited       = "rate_limited"
	ReasonSeriesLimit       = "max_global_series_per_user"
	ReasonLabelNames        = "max_label_names_per_series"
	ReasonLabelValue        = "max_label_value_length"
	ReasonSamplesPerRequest = "max_samples_per_request"
	ReasonBurst             = "ingestion_burst_size"
	ReasonInvalidLabels     = "invalid_labels"
	ReasonOutOfOrder        = "out_of_order"
	ReasonTooOld            = "sample_too_old"
	ReasonTooNew            = "sample_too_far_in_future"
	ReasonInvalidHistogram  = "invalid_native_histogram"
	// ReasonAlertRateLimited counts alerts, not samples.
	ReasonAlertRateLimited = "alert_rate_limited"
)

// Bounds on sample timestamps: older samples could no longer be stored,
// newer ones are clock errors.
const (
	MaxSampleAge   = time.Hour
	MaxSampleAhead = 10 * time.Minute
)

const maxProblemDescription = 200

// Validator is the one check of what a sender wrote, before labelling:
// labels, timestamps, native histograms and the per-request limits. The
// push receivers call it at the door (a sender gets its 400 at once) and
// the router again on every batch it routes (NATS and scrape sources have
// no door).
type Validator struct {
	Now func() time.Time
}

// Validate checks wr in place. With strict (pushes answered over HTTP) the
// first problem refuses the whole batch with a 400 naming it, so that
// nothing is half-written; otherwise only the offending series or samples
// are dropped, each counted under its reason.
func (v Validator) Validate(a *catalogue.Agency, wr *prompb.WriteRequest, strict bool, o *outcome) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	lim := a.EffectiveLimits()
	total := samplesOf(wr)
	refuseAll := func(reason, msg string, status int) {
		o.discard(reason, total, status, msg)
		wr.Timeseries = wr.Timeseries[:0]
	}
	if total > lim.MaxSamplesPerRequest {
		refuseAll(ReasonSamplesPerRequest, fmt.Sprintf("request has %d samples, more than max_samples_per_request (%d)", total, lim.MaxSamplesPerRequest), http.StatusRequestEntityTooLarge)
		return
	}
	if total > lim.IngestionBurstSize {
		refuseAll(ReasonBurst, fmt.Sprintf("request has %d samples, more than ingestion_burst_size (%d) allows at once", total, lim.IngestionBurstSize), http.StatusRequestEntityTooLarge)
		return
	}
	t := now()
	oldest, newest := t.Add(-MaxSampleAge).UnixMilli(), t.Add(MaxSampleAhead).UnixMilli()
	kept := wr.Timeseries[:0]
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		n := len(ts.Samples) + len(ts.Histograms)
		if problem := checkRaw(ts); problem != "" {
			if strict {
				refuseAll(ReasonInvalidLabels, problem, http.StatusBadRequest)
				return
			}
			o.discard(ReasonInvalidLabels, n, http.StatusBadRequest, problem)
			continue
		}
		if reason, problem := checkSamples(ts, oldest, newest, strict, o); reason != "" {
			// Strict: one bad sample refuses the batch.
			refuseAll(reason, problem, http.StatusBadRequest)
			return
		}
		if len(ts.Samples)+len(ts.Histograms) == 0 {
			continue
		}
		kept = append(kept, *ts)
	}
	wr.Timeseries = kept
}

// checkSamples checks the timestamps and histograms of a series. Strict, it
// returns the first problem; otherwise it drops bad samples (counted in o).
func checkSamples(ts *prompb.TimeSeries, oldest, newest int64, strict bool, o *outcome) (string, string) {
	prev := int64(math.MinInt64)
	samples := ts.Samples[:0]
	for _, s := range ts.Samples {
		reason, problem := checkTimestamp(s.Timestamp, prev, oldest, newest, ts)
		if reason != "" {
			if strict {
				return reason, problem
			}
			o.discard(reason, 1, http.StatusBadRequest, problem)
			continue
		}
		prev = s.Timestamp
		samples = append(samples, s)
	}
	ts.Samples = samples
	prev = math.MinInt64
	hists := ts.Histograms[:0]
	for _, h := range ts.Histograms {
		reason, problem := checkTimestamp(h.Timestamp, prev, oldest, newest, ts)
		if reason == "" {
			if err := validHistogram(h); err != nil {
				reason, problem = ReasonInvalidHistogram, fmt.Sprintf("invalid native histogram for series %s: %v", describe(ts.Labels), err)
			}
		}
		if reason != "" {
			if strict {
				return reason, problem
			}
			o.discard(reason, 1, http.StatusBadRequest, problem)
			continue
		}
		prev = h.Timestamp
		hists = append(hists, h)
	}
	ts.Histograms = hists
	return "", ""
}

// validHistogram checks a native histogram as the TSDB would before
// storing it: spans and buckets agree, counts add up, the schema is known.
func validHistogram(h prompb.Histogram) error {
	if h.IsFloatHistogram() {
		return h.ToFloatHistogram().Validate()
	}
	return h.ToIntHistogram().Validate()
}

func checkTimestamp(t, prev, oldest, newest int64, ts *prompb.TimeSeries) (string, string) {
	switch {
	case t < oldest:
		return ReasonTooOld, fmt.Sprintf("sample for series %s is too old: timestamp %s is more than %s ago", describe(ts.Labels), time.UnixMilli(t).UTC().Format(time.RFC3339), MaxSampleAge)
	case t > newest:
		return ReasonTooNew, fmt.Sprintf("sample for series %s is too far in the future: timestamp %s", describe(ts.Labels), time.UnixMilli(t).UTC().Format(time.RFC3339))
	case t < prev:
		return ReasonOutOfOrder, fmt.Sprintf("samples for series %s are out of order: %d after %d", describe(ts.Labels), t, prev)
	}
	return "", ""
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
		return ReasonLabelNames, fmt.Sprintf("series %s has %d labels, more than max_label_names_per_series (%d)", describe(ts.Labels), len(ts.Labels), lim.MaxLabelNamesPerSeries)
	}
	for _, l := range ts.Labels {
		if len(l.Value) > lim.MaxLabelValueLength {
			return ReasonLabelValue, fmt.Sprintf("value of label %q in series %s is %d bytes, longer than max_label_value_length (%d)", l.Name, describe(ts.Labels), len(l.Value), lim.MaxLabelValueLength)
		}
	}
	return "", ""
}

func samplesOf(wr *prompb.WriteRequest) int {
	n := 0
	for i := range wr.Timeseries {
		n += len(wr.Timeseries[i].Samples) + len(wr.Timeseries[i].Histograms)
	}
	return n
}

// CheckPush validates a batch an agency pushed, at the door: nil, or the
// 4xx its sender gets, naming the series or limit. Nothing of a refused
// batch is stored.
func CheckPush(a *catalogue.Agency, wr *prompb.WriteRequest, now func() time.Time) *httpapi.Status {
	var o outcome
	Validator{Now: now}.Validate(a, wr, true, &o)
	if o.status >= 400 {
		return &httpapi.Status{Code: o.status, Msg: o.message}
	}
	return nil
}
