package router

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

func limitedAgency(t *testing.T) *catalogue.Agency {
	cat, err := catalogue.Parse([]byte(`provider: {name: P}
agencies:
  - id: a
    name: A
    phase: run
    limits: {ingestion_rate: 10, ingestion_burst_size: 20, max_global_series_per_user: 2}
`), "c.yaml")
	require.NoError(t, err)
	return cat.Agency("a")
}

func batch(ts int64, names ...string) *prompb.WriteRequest {
	wr := &prompb.WriteRequest{}
	for _, n := range names {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: n}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: ts}},
		})
	}
	return wr
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(func() time.Time { return now }, nil)
	a := limitedAgency(t)

	// Peek takes nothing: asking twice for the whole burst succeeds twice.
	ok, _ := l.Peek(a, 20)
	require.True(t, ok)
	ok, _ = l.Peek(a, 20)
	require.True(t, ok)

	// Series limit: two series pass, the third is refused with a 400.
	var o outcome
	wr := batch(now.UnixMilli(), "x", "y", "z")
	l.admit(a, wr, &o, false)
	require.Len(t, wr.Timeseries, 2)
	require.Equal(t, 2, o.accepted)
	require.Equal(t, 400, o.status)
	require.Contains(t, o.message, "max_global_series_per_user (2)")
	require.Equal(t, map[string]int{ReasonSeriesLimit: 1}, o.discarded)

	// Out of order against the last routed sample of a series.
	o = outcome{}
	wr = batch(now.UnixMilli()-1000, "x")
	l.admit(a, wr, &o, false)
	require.Empty(t, wr.Timeseries)
	require.Equal(t, map[string]int{ReasonOutOfOrder: 1}, o.discarded)

	// Rate: 3+1 samples of a burst of 20 are used; 16 more fit, 17 do not.
	ok, _ = l.Peek(a, 16)
	require.True(t, ok)
	ok, after := l.Peek(a, 17)
	require.False(t, ok)
	require.InDelta(t, 100*time.Millisecond, after, float64(time.Millisecond), "one sample at 10/s")
	o = outcome{}
	wr = &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "x"}}}}}
	for i := range 17 {
		wr.Timeseries[0].Samples = append(wr.Timeseries[0].Samples, prompb.Sample{Value: 1, Timestamp: now.UnixMilli() + int64(i)})
	}
	l.admit(a, wr, &o, false)
	require.Equal(t, 429, o.status)
	require.Empty(t, wr.Timeseries)
	require.Positive(t, o.retryAfter)

	// A redelivered batch (its router died; the sender may have had its
	// 2xx) is past the rate limit and the ordering check: the store's
	// out-of-order window takes it.
	o = outcome{}
	wr = &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "x"}}}}}
	for i := range 17 {
		wr.Timeseries[0].Samples = append(wr.Timeseries[0].Samples, prompb.Sample{Value: 1, Timestamp: now.UnixMilli() - 5000 + int64(i)})
	}
	l.admit(a, wr, &o, true)
	require.Equal(t, 17, o.accepted)
	require.Zero(t, o.status)
	ok, _ = l.Peek(a, 16)
	require.True(t, ok, "a redelivery takes no tokens")

	// Time refills the bucket; idle series are forgotten after an hour.
	now = now.Add(2 * time.Hour)
	o = outcome{}
	wr = batch(now.UnixMilli(), "new1", "new2")
	l.admit(a, wr, &o, false)
	require.Equal(t, 2, o.accepted, "idle series no longer count against the limit")
	require.Zero(t, o.status)
	require.Equal(t, map[string]int{"a": 2}, l.activeSeries())
}

func TestCheckRaw(t *testing.T) {
	for _, tc := range []struct {
		labels []prompb.Label
		want   string
	}{
		{[]prompb.Label{{Name: "__name__", Value: "m"}}, ""},
		{nil, "series without labels"},
		{[]prompb.Label{{Name: "__name__", Value: "m"}, {Name: "", Value: "v"}}, "empty label name"},
		{[]prompb.Label{{Name: "__name__", Value: "m"}, {Name: "a", Value: ""}}, `empty value for label "a" in series m{a=""}`},
		{[]prompb.Label{{Name: "__name__", Value: "m"}, {Name: "a", Value: "1"}, {Name: "a", Value: "2"}}, `duplicate label "a" in series m{a="1", a="2"}`},
		{[]prompb.Label{{Name: "a", Value: "1"}}, `series {a="1"} has no metric name`},
		{[]prompb.Label{{Name: "__name__", Value: "m"}, {Name: "a", Value: "\xff"}}, `value of label "a" is not valid UTF-8`},
	} {
		require.Equal(t, tc.want, checkRaw(&prompb.TimeSeries{Labels: tc.labels}))
	}
}

// TestSharedLimits: routers sharing an agency's limits each take their
// share of the rates; a burst never falls below one request's worth.
func TestSharedLimits(t *testing.T) {
	cat, err := catalogue.Parse([]byte(`provider: {name: P}
agencies:
  - id: a
    name: A
    phase: run
    limits: {ingestion_rate: 10, ingestion_burst_size: 20, max_samples_per_request: 5}
`), "c.yaml")
	require.NoError(t, err)
	a := cat.Agency("a")
	lim := a.EffectiveLimits()
	require.Equal(t, lim, share(lim, 1))
	two := share(lim, 2)
	require.InDelta(t, 5, two.IngestionRate, 0)
	require.Equal(t, 10, two.IngestionBurstSize)
	lim.MaxSamplesPerRequest = 15
	require.Equal(t, 15, share(lim, 4).IngestionBurstSize, "a whole request still fits")

	now := time.Unix(1_700_000_000, 0)
	peers := 2
	l := newLimiter(func() time.Time { return now }, func() int { return peers })
	ok, _ := l.Peek(a, 10)
	require.True(t, ok)
	ok, _ = l.Peek(a, 11)
	require.False(t, ok, "half the burst with two routers")
	peers = 1
	ok, _ = l.Peek(a, 20)
	require.True(t, ok, "the whole burst again when the other router is gone")
}
