package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// fakeEngine answers the query API as a careless engine would: every
// tenant's series whatever the tenant header (as Thanos without tenancy
// enforcement), with its tenant label; it records what it was asked.
type fakeEngine struct {
	mu      sync.Mutex
	queries []string
	tenants []string
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.Query().Get("query")+r.URL.Query().Get("match[]"))
	f.tenants = append(f.tenants, r.Header.Get("THANOS-TENANT"))
	f.mu.Unlock()
	var data any
	switch r.URL.Path {
	case "/api/v1/query":
		data = map[string]any{"resultType": "matrix", "result": []any{
			map[string]any{"metric": map[string]string{"__name__": "up", "agency": "alpha", "tenant_id": "alpha"}, "values": [][2]any{{1.5, "1"}, {2.5, "0"}}},
			map[string]any{"metric": map[string]string{"__name__": "up", "agency": "beta", "tenant_id": "beta"}, "values": [][2]any{{1.5, "1"}}},
		}}
	case "/api/v1/labels":
		data = []string{"__name__", "agency", "tenant_id"}
	default:
		data = []string{"alpha", "beta"}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
}

// TestEngineQuerier: every read carries the agency's matcher and tenant
// header; another agency's series in the answer are dropped; the engine's
// tenant label never reaches the agency, and a selector naming it or
// another agency asks the engine nothing.
func TestEngineQuerier(t *testing.T) {
	fe := &fakeEngine{}
	srv := httptest.NewServer(fe)
	defer srv.Close()
	eq := newEngineQueryable(&EngineConfig{URL: srv.URL, TenantHeader: "THANOS-TENANT", TenantLabel: "tenant_id"}, "alpha")
	q, err := eq.Querier(0, 10_000)
	require.NoError(t, err)
	ctx := context.Background()

	ss := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	var got []string
	for ss.Next() {
		s := ss.At()
		n := 0
		it := s.Iterator(nil)
		for it.Next() != 0 {
			n++
		}
		got = append(got, fmt.Sprintf("%s %d", s.Labels(), n))
	}
	require.NoError(t, ss.Err())
	require.Equal(t, []string{`{__name__="up", agency="alpha"} 2`}, got, "beta's series dropped, the tenant label removed")
	require.Equal(t, `{__name__="up",agency="alpha"}[10001ms]`, fe.queries[0])
	require.Equal(t, "alpha", fe.tenants[0])

	names, _, err := q.LabelNames(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "agency"}, names)
	vals, _, err := q.LabelValues(ctx, "tenant_id", nil)
	require.NoError(t, err)
	require.Empty(t, vals)

	asked := len(fe.queries)
	for _, m := range []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, "agency", "beta"),
		labels.MustNewMatcher(labels.MatchEqual, "tenant_id", "beta"),
		labels.MustNewMatcher(labels.MatchEqual, "tenant_id", "alpha"),
		labels.MustNewMatcher(labels.MatchRegexp, "agency", "b.*"),
	} {
		ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"), m)
		require.False(t, ss.Next(), m.String())
	}
	require.Len(t, fe.queries, asked, "a selector that cannot match the agency asks the engine nothing")

	// A matcher that the missing tenant label satisfies is left out.
	ss = q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"), labels.MustNewMatcher(labels.MatchEqual, "tenant_id", ""))
	require.True(t, ss.Next())
	require.Equal(t, `{__name__="up",agency="alpha"}[10001ms]`, fe.queries[len(fe.queries)-1])
}

// TestExportFailover: with several endpoints of the engine, the export
// moves on when one is down or failing and every batch arrives in order,
// each agency under its own tenant header; a batch the engine refuses for
// good goes to the agency's dead letters.
func TestExportFailover(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()

	var mu sync.Mutex
	got := map[string][]float64{}
	var failing bool
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		require.NoError(t, err)
		var wr prompb.WriteRequest
		require.NoError(t, wr.Unmarshal(raw))
		mu.Lock()
		defer mu.Unlock()
		if failing {
			http.Error(w, "ingester unavailable", http.StatusServiceUnavailable)
			return
		}
		if wr.Timeseries[0].Samples[0].Value < 0 {
			http.Error(w, "out of bounds", http.StatusBadRequest)
			return
		}
		tenant := r.Header.Get("THANOS-TENANT")
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "agency" {
					assert.Equal(t, tenant, l.Value, "each agency under its own tenant")
				}
			}
			for _, s := range ts.Samples {
				got[tenant] = append(got[tenant], s.Value)
			}
		}
	}))
	defer live.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // refuses connections

	c, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n  - {id: beta, name: B, phase: run}\n"), "c.yaml")
	require.NoError(t, err)
	ex := NewExporter(ExporterOptions{Bus: b, Remote: &RemoteConfig{URL: dead.URL + "/api/v1/receive", Fallbacks: []string{live.URL + "/api/v1/receive"}, TenantHeader: "THANOS-TENANT"}})
	require.NoError(t, ex.Apply(c))
	done := make(chan struct{})
	go func() { _ = ex.Run(ctx); close(done) }()

	publish := func(agency string, v float64) {
		wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "x"}, {Name: "agency", Value: agency}},
			Samples: []prompb.Sample{{Value: v, Timestamp: int64(1000 + v)}},
		}}}
		data, err := bus.EncodeMetrics(wr)
		require.NoError(t, err)
		_, err = b.Publish(ctx, &nats.Msg{Subject: bus.AgencySubject(agency, bus.KindMetrics), Data: data}, "")
		require.NoError(t, err)
	}
	want := map[string][]float64{}
	for i := range 20 {
		for _, a := range []string{"alpha", "beta"} {
			publish(a, float64(i))
			want[a] = append(want[a], float64(i))
		}
		if i == 10 { // the live endpoint fails a while: the batches wait, in order
			mu.Lock()
			failing = true
			mu.Unlock()
			time.AfterFunc(500*time.Millisecond, func() { mu.Lock(); failing = false; mu.Unlock() })
		}
	}
	publish("alpha", -1) // refused for good
	publish("alpha", 20)
	want["alpha"] = append(want["alpha"], 20)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(c, want, got)
	}, 30*time.Second, 20*time.Millisecond, "every batch through the live endpoint, in order")
	dl, err := b.DeadLetters(ctx, "alpha", 10)
	require.NoError(t, err)
	require.Len(t, dl, 1, "the refused batch is a dead letter")
	require.Equal(t, bus.StageExport, dl[0].Stage)
	cancel()
	<-done
}
