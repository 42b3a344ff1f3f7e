package router

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// TestRouteOverBus runs the router against the embedded NATS server: valid
// batches are republished to their agency with the agency label set from the
// source, the rest are rejected and counted, and every input leaves INGEST.
func TestRouteOverBus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	cat, err := catalogue.Parse([]byte(`provider: {name: P}
agencies:
  - {id: alpha, name: A, phase: run, services: [{id: web, name: W, tier: low}],
     credentials: [{name: alpha-push, token_sha256: 2222222222222222222222222222222222222222222222222222222222222222}]}
`), "c.yaml")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	meter := &countMeter{}
	r := New(Options{Bus: b, Catalogue: catalogue.NewHolder(cat), Registerer: reg, Meter: meter})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	out := make(chan *nats.Msg, 10)
	sub, err := b.ChanSubscribe("agency.>", out)
	require.NoError(t, err)
	defer sub.Unsubscribe()

	publish := func(subject string, ts ...prompb.TimeSeries) {
		data, err := bus.EncodeMetrics(&prompb.WriteRequest{Timeseries: ts})
		require.NoError(t, err)
		_, err = b.Publish(ctx, &nats.Msg{Subject: subject, Data: data}, "")
		require.NoError(t, err)
	}
	publish(bus.IngestSubject(bus.KindMetrics, "scrape", "ghost", "web"), series("__name__", "x"))
	publish(bus.IngestSubject(bus.KindMetrics, "push", "nobody"), series("__name__", "x"))
	_, err = b.Publish(ctx, &nats.Msg{Subject: bus.IngestSubject(bus.KindMetrics, "push", "alpha-push"), Data: []byte("not snappy")}, "")
	require.NoError(t, err)
	publish(bus.IngestSubject(bus.KindMetrics, "push", "alpha-push"), series("__name__", "m", "agency", "beta"))
	// An agency publishing to NATS directly: its account's import chose the subject.
	publish(bus.IngestSubject(bus.KindMetrics, bus.SourceNATS, "alpha"), series("__name__", "n"))

	select {
	case m := <-out:
		require.Equal(t, "agency.alpha.metrics", m.Subject)
		var wr prompb.WriteRequest
		require.NoError(t, bus.DecodeMetrics(m.Data, &wr))
		require.Equal(t, map[string]string{"__name__": "m", "agency": "alpha", "exported_agency": "beta"}, labelsOf(wr.Timeseries[0]))
	case <-time.After(10 * time.Second):
		t.Fatal("nothing routed")
	}
	select {
	case m := <-out:
		require.Equal(t, "agency.alpha.metrics", m.Subject)
		var wr prompb.WriteRequest
		require.NoError(t, bus.DecodeMetrics(m.Data, &wr))
		require.Equal(t, map[string]string{"__name__": "n", "agency": "alpha"}, labelsOf(wr.Timeseries[0]))
	case <-time.After(10 * time.Second):
		t.Fatal("the NATS-sourced batch was not routed")
	}
	require.Eventually(t, func() bool { return meter.get("alpha") == 2 }, 5*time.Second, 20*time.Millisecond,
		"the router meters the samples it forwarded, once")
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(r.metrics.rejected.WithLabelValues("unknown_agency")) == 1 &&
			testutil.ToFloat64(r.metrics.rejected.WithLabelValues("unknown_credential")) == 1 &&
			testutil.ToFloat64(r.metrics.rejected.WithLabelValues("undecodable")) == 1
	}, 5*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		n, _, err := b.StreamState(ctx, bus.StreamIngest, "")
		return err == nil && n == 0
	}, 5*time.Second, 50*time.Millisecond, "every input is acked or terminated")
	select {
	case m := <-out:
		t.Fatalf("unexpected routed message on %s", m.Subject)
	default:
	}
	cancel()
	require.NoError(t, <-done)
}

type countMeter struct {
	mu sync.Mutex
	n  map[string]float64
}

func (m *countMeter) Add(agency, kind string, n float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]float64{}
	}
	m.n[agency+"/"+kind] += n
}

func (m *countMeter) get(agency string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[agency+"/samples_ingested"]
}
