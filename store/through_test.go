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

// TestWriteThrough: a push appended in its request is not appended again
// by the consumer; a push whose append did not happen here (aborted, a
// token of another process, an append that failed) is appended by the
// consumer; after a failed append the consumer alone appends until it has
// caught up. Every sample is stored exactly once.
func TestWriteThrough(t *testing.T) {
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
	adb := st.dbs["alpha"]

	now := time.Now().UnixMilli()
	step := int64(0)
	// push stores a one-sample batch of metric name under tok, as the
	// router does, and returns its request.
	push := func(name, tok string) *prompb.WriteRequest {
		step++
		wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: name}, {Name: "agency", Value: "alpha"}},
			Samples: []prompb.Sample{{Value: float64(step), Timestamp: now + step}},
		}}}
		data, err := bus.EncodeMetrics(wr)
		require.NoError(t, err)
		msg := &nats.Msg{Subject: bus.AgencySubject("alpha", bus.KindMetrics), Data: data, Header: nats.Header{}}
		if tok != "" {
			msg.Header.Set(bus.HeaderThrough, tok)
		}
		_, err = b.Publish(ctx, msg, "")
		require.NoError(t, err)
		return wr
	}
	appended := func() float64 { return testutil.ToFloat64(st.metrics.appended.WithLabelValues("alpha")) }
	count := func(c *assert.CollectT, name string) int {
		q, err := adb.db.Querier(0, now+1000)
		require.NoError(c, err)
		defer q.Close()
		ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
		n := 0
		for ss.Next() {
			it := ss.At().Iterator(nil)
			for it.Next() != 0 {
				n++
			}
		}
		return n
	}
	settled := func(name string, want int, total float64) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, want, count(c, name))
			assert.Zero(c, st.through.pending(), "every token met by the consumer")
			assert.InDelta(c, total, appended(), 0, "samples counted once")
		}, 10*time.Second, 10*time.Millisecond)
	}

	// Appended in the request: the consumer only acks.
	for range 3 {
		tok := st.Begin(1)
		wr := push("through", tok)
		n, err := st.Append(ctx, "alpha", tok, wr)
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	settled("through", 3, 3)

	// Aborted (not stored whole), or a token this process never issued
	// (another process, before a restart): the consumer appends.
	tok := st.Begin(1)
	push("aborted", tok)
	st.Abort(tok)
	push("foreign", "0badc0ffee00-1")
	settled("aborted", 1, 5)
	settled("foreign", 1, 5)

	// After a failed append the consumer takes over until it has caught
	// up; then appends in the request resume.
	adb.degraded.Store(true)
	tok = st.Begin(1)
	wr := push("degraded", tok)
	n, err := st.Append(ctx, "alpha", tok, wr)
	require.NoError(t, err)
	require.Zero(t, n, "left to the consumer")
	settled("degraded", 1, 6)
	require.False(t, adb.degraded.Load(), "the consumer caught up")
	tok = st.Begin(1)
	wr = push("degraded", tok)
	n, err = st.Append(ctx, "alpha", tok, wr)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	settled("degraded", 2, 7)
}
