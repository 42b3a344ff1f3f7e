package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// TestSeriesCache: known series are appended by reference; a reference the
// head no longer knows falls back to the labels, and nothing is lost; the
// decoder's reused buffers never leak into the stored labels.
func TestSeriesCache(t *testing.T) {
	c, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n"), "c.yaml")
	require.NoError(t, err)
	st, err := New(Options{Dir: filepath.Join(t.TempDir(), "tsdb")})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Apply(c))
	cons := &consumer{s: st, adb: st.dbs["alpha"]}
	now := time.Now().UnixMilli()
	push := func(t0 int64, names ...string) {
		wr := &prompb.WriteRequest{}
		for _, n := range names {
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: n}, {Name: "agency", Value: "alpha"}},
				Samples: []prompb.Sample{{Value: 1, Timestamp: t0}},
			})
		}
		data, err := bus.EncodeMetrics(wr)
		require.NoError(t, err)
		var got prompb.WriteRequest
		require.NoError(t, cons.dec.Decode(data, &got))
		app := cons.adb.db.Appender(context.Background())
		var b labels.ScratchBuilder
		n := cons.adb.appendRequest(st, app, &got, &b)
		require.Equal(t, len(names), n)
		require.NoError(t, app.Commit())
	}
	push(now, "a", "b")
	require.Equal(t, 2, cons.adb.refs.len())
	push(now+1000, "a", "b")                                                  // by reference
	cons.adb.refs.each(func(k seriesKey) { cons.adb.refs.set(k, 987654321) }) // as if the head had dropped the series
	push(now+2000, "b", "a")
	push(now+3000, "zz_overwrites_the_buffer", "a")

	q, err := cons.adb.db.Querier(0, now+10000)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	got := map[string]int{}
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			got[ss.At().Labels().String()]++
		}
	}
	require.NoError(t, ss.Err())
	require.Equal(t, map[string]int{
		`{__name__="a", agency="alpha"}`:                        4,
		`{__name__="b", agency="alpha"}`:                        3,
		`{__name__="zz_overwrites_the_buffer", agency="alpha"}`: 1,
	}, got)
}

// TestPoisonBatches: a batch the TSDB refuses part of (an invalid native
// histogram that reached the bus without the door's check) loses only that
// sample; an undecodable batch goes to the agency's dead letters; the
// agency's later batches are all stored.
func TestPoisonBatches(t *testing.T) {
	c, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n"), "c.yaml")
	require.NoError(t, err)
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	st, err := New(Options{Dir: filepath.Join(t.TempDir(), "tsdb"), Bus: b})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Apply(c))

	now := time.Now().UnixMilli()
	bad := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 1}, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 0},
		Schema: 0, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{5}, Timestamp: now}
	publish := func(data []byte) {
		_, err := b.Publish(ctx, &nats.Msg{Subject: bus.AgencySubject("alpha", bus.KindMetrics), Data: data}, "")
		require.NoError(t, err)
	}
	data, err := bus.EncodeMetrics(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "h"}, {Name: "agency", Value: "alpha"}}, Histograms: []prompb.Histogram{bad}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "ok_before"}, {Name: "agency", Value: "alpha"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
	}})
	require.NoError(t, err)
	publish(data)
	publish([]byte("not a metrics batch"))
	data, err = bus.EncodeMetrics(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "ok_after"}, {Name: "agency", Value: "alpha"}}, Samples: []prompb.Sample{{Value: 2, Timestamp: now}}},
	}})
	require.NoError(t, err)
	publish(data)

	count := func(name string) int {
		q, err := st.DB("alpha").Querier(0, now+1)
		require.NoError(t, err)
		defer q.Close()
		ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
		n := 0
		for ss.Next() {
			n++
		}
		return n
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 1, count("ok_before"), "the rest of the batch is stored")
		assert.Equal(c, 1, count("ok_after"), "later batches are stored")
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 0, count("h"))
	require.InDelta(t, 1, testutil.ToFloat64(st.metrics.discarded.WithLabelValues("alpha", "invalid_native_histogram")), 0)
	dls, err := b.DeadLetters(ctx, "alpha", 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, bus.StageStore, dls[0].Stage)
	require.Contains(t, dls[0].Reason, "undecodable")
	require.Equal(t, bus.AgencySubject("alpha", bus.KindMetrics), dls[0].Subject)
}
