package collector

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// TestScrapeConfigKnobs: the catalogue's scrape_config fields reach
// Prometheus's scrape loop: an exporter answering application/octet-stream
// is up only where its entry sets fallback_scrape_protocol; basic_auth
// takes its password from a file; params go on the URL;
// metric_relabel_configs drop a series; sample_limit fails a scrape that
// exceeds it.
func TestScrapeConfigKnobs(t *testing.T) {
	octet := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		fmt.Fprint(w, "# TYPE legacy_gauge gauge\nlegacy_gauge 7\n")
	}
	legacy, legacyNoFallback := serve(t, octet), serve(t, octet)
	var gotParams, gotAuth string
	var mu sync.Mutex
	secured := serve(t, func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		mu.Lock()
		gotAuth = user + ":" + pass
		if m := r.URL.Query().Get("module"); m != "" {
			gotParams = m
		}
		mu.Unlock()
		if user != "samdrift" || pass != "s3cret" {
			http.Error(w, "unauthorised", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "kept 1\ndropped_debug 2\nalso 3\n")
	})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "password"), []byte("s3cret\n"), 0o600))
	cfgFile := filepath.Join(dir, "c.yaml")
	cat, err := catalogue.Parse([]byte(fmt.Sprintf(`provider: {name: P}
defaults: {scrape_interval: 1s}
agencies:
  - id: alpha
    name: A
    phase: run
    services:
      - {id: legacy, name: L, tier: low, scrape: [{targets: [%q], fallback_scrape_protocol: PrometheusText0.0.4}]}
      - {id: nofallback, name: N, tier: low, scrape: [{targets: [%q]}]}
      - id: secured
        name: S
        tier: low
        scrape:
          - targets: [%q]
            basic_auth: {username: samdrift, password_file: password}
            params: {module: [http_2xx]}
            metric_relabel_configs:
              - {source_labels: [__name__], regex: "dropped_.*", action: drop}
      - {id: limited, name: Li, tier: low, scrape: [{targets: [%q], sample_limit: 1, basic_auth: {username: samdrift, password_file: password}}]}
`, legacy, legacyNoFallback, secured, secured)), cfgFile)
	require.NoError(t, err)

	b := openBus(t)
	seen := map[string]map[string]float64{}
	sub, err := b.Subscribe("ingest.metrics.>", func(m *nats.Msg) {
		var wr prompb.WriteRequest
		require.NoError(t, bus.DecodeMetrics(m.Data, &wr))
		mu.Lock()
		defer mu.Unlock()
		if seen[m.Subject] == nil {
			seen[m.Subject] = map[string]float64{}
		}
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					for _, s := range ts.Samples {
						seen[m.Subject][l.Value] = s.Value
					}
				}
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

	subj := func(svc string) map[string]float64 { return seen["ingest.metrics.scrape.alpha."+svc] }
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return subj("legacy")["up"] == 1 && subj("nofallback") != nil && subj("secured")["up"] == 1 && subj("limited") != nil
	}, 20*time.Second, 100*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 7.0, subj("legacy")["legacy_gauge"], "parsed with the fallback protocol")
	require.Equal(t, 0.0, subj("nofallback")["up"], "without it, Prometheus refuses the Content-Type")
	require.NotContains(t, subj("nofallback"), "legacy_gauge")
	require.Equal(t, "samdrift:s3cret", gotAuth, "the password from its file")
	require.Equal(t, "http_2xx", gotParams)
	require.Contains(t, subj("secured"), "kept")
	require.NotContains(t, subj("secured"), "dropped_debug", "metric_relabel_configs applied")
	require.Equal(t, 0.0, subj("limited")["up"], "over sample_limit the scrape fails")
}
