package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
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
		n, err := cons.appendRequest(app, &got, &b)
		require.NoError(t, err)
		require.Equal(t, len(names), n)
		require.NoError(t, app.Commit())
	}
	push(now, "a", "b")
	require.Len(t, cons.refs, 2)
	push(now+1000, "a", "b") // by reference
	for k := range cons.refs {
		cons.refs[k] = 987654321 // as if the head had dropped the series
	}
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
