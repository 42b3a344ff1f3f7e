package collector

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

func serve(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestScrapeFormats scrapes targets that speak only one exposition format
// each, and checks what reaches the bus, under which source.
func TestScrapeFormats(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "proto_gauge", Help: "h"})
	g.Set(3)
	reg.MustRegister(g)

	text := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE text_gauge gauge\ntext_gauge 1\n")
	})
	om := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
		fmt.Fprint(w, "# TYPE om_gauge gauge\nom_gauge 2\n# EOF\n")
	})
	proto := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		f := expfmt.NewFormat(expfmt.TypeProtoDelim)
		w.Header().Set("Content-Type", string(f))
		enc := expfmt.NewEncoder(w, f)
		for _, mf := range mfs {
			require.NoError(t, enc.Encode(mf))
		}
	})
	garbage := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "this is { not exposition\n")
	})
	cat, err := catalogue.Parse([]byte(fmt.Sprintf(`provider: {name: P}
defaults: {scrape_interval: 1s}
agencies:
  - id: alpha
    name: A
    phase: run
    services:
      - {id: text, name: T, tier: low, scrape: [{targets: [%q]}]}
      - {id: om, name: O, tier: low, scrape: [{targets: [%q]}]}
      - {id: proto, name: P, tier: low, scrape: [{targets: [%q], job_name: protojob}]}
      - {id: bad, name: B, tier: low, scrape: [{targets: [%q]}]}
      - {id: down, name: D, tier: low, scrape: [{targets: ["127.0.0.1:1"]}]}
  - id: planned
    name: Planned
    phase: plan
    services:
      - {id: web, name: W, tier: low, scrape: [{targets: [%q]}]}
`, text, om, proto, garbage, text)), "c.yaml")
	require.NoError(t, err)

	b := openBus(t)
	var mu sync.Mutex
	seen := map[string]map[string]float64{} // subject -> metric name -> value
	jobs := map[string]string{}
	sub, err := b.Subscribe("ingest.metrics.>", func(m *nats.Msg) {
		var wr prompb.WriteRequest
		require.NoError(t, bus.DecodeMetrics(m.Data, &wr))
		mu.Lock()
		defer mu.Unlock()
		if seen[m.Subject] == nil {
			seen[m.Subject] = map[string]float64{}
		}
		for _, ts := range wr.Timeseries {
			var name string
			for _, l := range ts.Labels {
				switch l.Name {
				case "__name__":
					name = l.Value
				case "job":
					jobs[m.Subject] = l.Value
				}
				require.False(t, strings.HasPrefix(l.Name, "__samdrift"), "internal label leaked: %s", l.Name)
			}
			for _, s := range ts.Samples {
				seen[m.Subject][name] = s.Value
			}
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()

	s, err := NewScraper(Options{Bus: b})
	require.NoError(t, err)
	require.NoError(t, s.Apply(cat))
	go func() { _ = s.Run() }()
	defer s.Stop()

	want := map[string][2]any{
		"ingest.metrics.scrape.alpha.text":  {"text_gauge", 1.0},
		"ingest.metrics.scrape.alpha.om":    {"om_gauge", 2.0},
		"ingest.metrics.scrape.alpha.proto": {"proto_gauge", 3.0},
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for subj, w := range want {
			if seen[subj][w[0].(string)] != w[1].(float64) || seen[subj]["up"] != 1 {
				return false
			}
		}
		return seen["ingest.metrics.scrape.alpha.bad"] != nil && seen["ingest.metrics.scrape.alpha.down"] != nil
	}, 20*time.Second, 100*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 0.0, seen["ingest.metrics.scrape.alpha.bad"]["up"], "malformed exposition yields up 0")
	require.Equal(t, 0.0, seen["ingest.metrics.scrape.alpha.down"]["up"], "unreachable target yields up 0")
	require.Contains(t, seen["ingest.metrics.scrape.alpha.text"], "scrape_duration_seconds")
	require.Contains(t, seen["ingest.metrics.scrape.alpha.text"], "scrape_samples_scraped")
	require.Equal(t, "protojob", jobs["ingest.metrics.scrape.alpha.proto"])
	require.Equal(t, "text", jobs["ingest.metrics.scrape.alpha.text"])
	require.NotContains(t, seen, "ingest.metrics.scrape.planned.web", "plan-phase agencies are not scraped")
}
