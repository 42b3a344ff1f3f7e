package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/samdrift/samdrift/catalogue"
)

// TestNativeHistogramsEndToEnd: native histograms arrive through every
// path — an OpenTelemetry SDK's exponential histogram over OTLP, remote
// write 2.0, and a scraped target's protobuf exposition — are stored as
// native histograms, and histogram_quantile, histogram_fraction and
// histogram_count answer through the scoped API; another agency reads
// none of them.
func TestNativeHistogramsEndToEnd(t *testing.T) {
	t.Parallel()
	// A target exposing a native histogram (client_golang, protobuf).
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scraped_latency_seconds", Help: "h",
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 100})
	reg.MustRegister(h)
	for i := range 1000 {
		h.Observe(float64(i%100) / 100) // 0 … 0.99 s, evenly
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services:
      - id: web
        name: Web
        tier: high
        scrape: [{targets: [%q], scrape_interval: 1s, scrape_native_histograms: true, scrape_protocols: [PrometheusProto]}]
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
`, catalogue.HashToken(alphaToken), strings.TrimPrefix(srv.URL, "http://"), catalogue.HashToken(betaToken)))
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))

	// OTLP: the SDK's base-2 exponential histogram.
	ctx := context.Background()
	exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL("http://"+addr+"/otlp/v1/metrics"),
		otlpmetrichttp.WithHeaders(map[string]string{"Authorization": "Bearer " + alphaToken}))
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("checkout"), semconv.ServiceInstanceID("i-1"))),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(500*time.Millisecond))),
		sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}})))
	defer func() { _ = mp.Shutdown(ctx) }()
	lat, err := mp.Meter("shop").Float64Histogram("checkout.latency", metric.WithUnit("s"))
	require.NoError(t, err)
	for i := range 1000 {
		lat.Record(ctx, float64(i%100)/100)
	}

	// Remote write 2.0: a valid native histogram, 100 observations
	// between 0.5 and 1 s and 100 between 1 and 2 s (schema 0).
	now := time.Now()
	st := writev2.NewSymbolTable()
	var series []writev2.TimeSeries
	for i := range 2 {
		nh := &histogram.Histogram{Count: uint64(200 * (i + 1)), Sum: 250 * float64(i+1), Schema: 0,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(100 * (i + 1)), 0}}
		require.NoError(t, nh.Validate())
		series = append(series, writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "rw2_latency_seconds"), nil),
			Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, now.Add(time.Duration(i-1)*time.Minute).UnixMilli(), nh)}})
	}
	req := writev2.Request{Timeseries: series[:1]}
	req.Symbols = st.Symbols()
	for i := range 2 {
		req.Timeseries = series[i : i+1]
		raw, err := req.Marshal()
		require.NoError(t, err)
		r := post(t, "http://"+addr+"/api/v1/push", alphaToken, "application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", snappy.Encode(nil, raw))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}

	for _, tc := range []struct{ q, want string }{
		// Stored as native histograms: the raw series has histogram points.
		{`checkout_latency_seconds`, "histogram"},
		{`scraped_latency_seconds`, "histogram"},
		{`rw2_latency_seconds`, "histogram"},
	} {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			code, pr := api(c, addr, alphaToken, "/query", map[string][]string{"query": {tc.q}})
			assert.Equal(c, http.StatusOK, code)
			assert.Contains(c, string(pr.Data), `"`+tc.want+`"`, tc.q)
		}, 60*time.Second, 250*time.Millisecond, tc.q)
	}
	value := func(q string) float64 {
		v := query(t, addr, alphaToken, q)
		require.Len(t, v, 1, q)
		f, err := strconv.ParseFloat(v[0].Value[1].(string), 64)
		require.NoError(t, err)
		return f
	}
	// The OTLP and scraped histograms both hold 1,000 observations spread
	// evenly over 0–1 s: the median is about 0.5 s, 9 in 10 under 0.9 s.
	for _, name := range []string{"checkout_latency_seconds", "scraped_latency_seconds"} {
		require.InDelta(t, 1000, value(fmt.Sprintf(`histogram_count(%s)`, name)), 0, name)
		require.InDelta(t, 0.5, value(fmt.Sprintf(`histogram_quantile(0.5, %s)`, name)), 0.08, name)
		require.InDelta(t, 0.9, value(fmt.Sprintf(`histogram_fraction(0, 0.9, %s)`, name)), 0.06, name)
	}
	// Remote write 2.0: the rate over the minute is 200 observations, half
	// in (0.5, 1] and half in (1, 2].
	require.InDelta(t, 0.5, value(`histogram_fraction(0, 1, increase(rw2_latency_seconds[2m]))`), 0.001)
	require.InDelta(t, 1.0, value(`histogram_quantile(0.5, increase(rw2_latency_seconds[2m]))`), 0.001)

	// Another agency sees none of it.
	for _, q := range []string{`histogram_count(checkout_latency_seconds)`, `histogram_quantile(0.5, rw2_latency_seconds)`, `scraped_latency_seconds`} {
		require.Empty(t, query(t, addr, betaToken, q), q)
		require.Empty(t, query(t, addr, betaToken, strings.Replace(q, "_seconds", `_seconds{agency="alpha"}`, 1)), q)
	}
}
