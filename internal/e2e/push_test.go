package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/samdrift/samdrift/catalogue"
)

// pushCatalogue has agencies alpha and beta, and "small", whose limits are
// tiny so that every limit can be hit.
func pushCatalogue() string {
	return fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high}]
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high}]
  - id: small
    name: Small
    phase: build
    credentials: [{name: small-cred, token_sha256: %s}]
    limits:
      ingestion_rate: 100
      ingestion_burst_size: 200
      max_global_series_per_user: 5
      max_label_names_per_series: 4
      max_label_value_length: 16
      max_samples_per_request: 150
  - id: planned
    name: Planned
    phase: plan
    credentials: [{name: planned-cred, token_sha256: %s}]
`, catalogue.HashToken(opsToken), catalogue.HashToken(alphaToken), catalogue.HashToken(betaToken),
		catalogue.HashToken("small-token"), catalogue.HashToken("planned-token"))
}

func startPushNode(t *testing.T, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue())
	addr := freeAddr(t)
	start(t, addr, append([]string{"run", "--config", cfg, "--data-dir", filepath.Join(dir, "data")}, extra...)...)
	return addr
}

// ts builds a series with one sample.
func ts(t time.Time, v float64, kv ...string) prompb.TimeSeries {
	var ls []prompb.Label
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: t.UnixMilli()}}}
}

func rwBody(t T, series ...prompb.TimeSeries) []byte {
	helper(t)
	raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

type pushResp struct {
	code       int
	body       string
	retryAfter string
	took       time.Duration
}

// errMsg is the error message of an answer in the API envelope (or its
// body as it is).
func (r pushResp) errMsg() string {
	var env struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(r.body), &env) == nil && env.Error != "" {
		return env.Error
	}
	return r.body
}

func post(t T, url, token, contentType, encoding string, body []byte) pushResp {
	helper(t)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return pushResp{code: resp.StatusCode, body: string(b), retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
}

func pushRW(t T, addr, token string, series ...prompb.TimeSeries) pushResp {
	helper(t)
	return post(t, "http://"+addr+"/api/v1/push", token, "application/x-protobuf", "snappy", rwBody(t, series...))
}

// TestRealPrometheusRemoteWrite: Debian's Prometheus remote-writes its own
// metrics with alpha's token, claiming agency="beta" in its external labels.
// Everything lands under alpha only.
func TestRealPrometheusRemoteWrite(t *testing.T) {
	t.Parallel()
	peer(t, "prometheus")
	addr := startPushNode(t)
	dir := t.TempDir()
	promAddr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  external_labels:
    agency: beta
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: [%q]}]
remote_write:
  - url: http://%s/api/v1/push
    authorization:
      credentials: %s
    queue_config:
      batch_send_deadline: 1s
`, promAddr, addr, alphaToken))
	startPeer(t, "prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `prometheus_build_info{job="prometheus"}`), 1)
	}, 60*time.Second, 500*time.Millisecond, "Prometheus's metrics never arrived")
	got := query(t, addr, alphaToken, `prometheus_build_info`)[0]
	require.Equal(t, "alpha", got.Metric["agency"])
	require.Equal(t, "beta", got.Metric["exported_agency"], "the sender's agency label is kept as exported_agency")
	require.Empty(t, query(t, addr, betaToken, `{job="prometheus"}`), "nothing reaches the agency the sender claimed")
	require.Empty(t, query(t, addr, opsToken, `prometheus_build_info{agency="beta"}`))
	require.Len(t, query(t, addr, opsToken, `prometheus_build_info{agency="alpha"}`), 1)
	// Real Prometheus sends NaN summaries and staleness markers: many series arrive.
	require.Greater(t, len(query(t, addr, alphaToken, `{job="prometheus"}`)), 100)
}

// TestOTelSDKExporter: the OpenTelemetry Go SDK's OTLP/HTTP metric exporter,
// unchanged, pushes to Samdrift.
func TestOTelSDKExporter(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []otlpmetrichttp.Option
	}{
		{"protobuf", nil},
		{"gzip", []otlpmetrichttp.Option{otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp, err := otlpmetrichttp.New(ctx, append([]otlpmetrichttp.Option{
				otlpmetrichttp.WithEndpointURL("http://" + addr + "/otlp/v1/metrics"),
				otlpmetrichttp.WithHeaders(map[string]string{"Authorization": "Bearer " + alphaToken}),
			}, tc.opts...)...)
			require.NoError(t, err)
			res := resource.NewWithAttributes(semconv.SchemaURL,
				semconv.ServiceName("checkout-"+tc.name), semconv.ServiceInstanceID("i-1"),
				attribute.String("deployment.environment", "test"), attribute.String("agency", "beta"))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
				sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(500*time.Millisecond))))
			defer mp.Shutdown(ctx)
			c, err := mp.Meter("shop").Int64Counter("orders")
			require.NoError(t, err)
			c.Add(ctx, 5, metric.WithAttributes(attribute.String("agency", "beta")))
			h, err := mp.Meter("shop").Float64Histogram("latency")
			require.NoError(t, err)
			h.Record(ctx, 0.25)
			require.NoError(t, mp.ForceFlush(ctx))

			job := "checkout-" + tc.name
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.Len(c, query(c, addr, alphaToken, fmt.Sprintf(`orders_total{job=%q}`, job)), 1)
			}, 30*time.Second, 200*time.Millisecond)
			got := query(t, addr, alphaToken, fmt.Sprintf(`orders_total{job=%q}`, job))[0]
			require.Equal(t, "alpha", got.Metric["agency"])
			require.Equal(t, "beta", got.Metric["exported_agency"])
			require.Equal(t, "i-1", got.Metric["instance"])
			require.Equal(t, "5", got.Value[1])
			// Resource attributes go to target_info, as Prometheus does it.
			ti := query(t, addr, alphaToken, fmt.Sprintf(`target_info{job=%q}`, job))
			require.Len(t, ti, 1)
			require.Equal(t, "test", ti[0].Metric["deployment_environment"])
			require.NotEmpty(t, query(t, addr, alphaToken, fmt.Sprintf(`latency_bucket{job=%q}`, job)))
			require.Empty(t, query(t, addr, betaToken, fmt.Sprintf(`{job=%q}`, job)))
		})
	}
}

func TestPushBadInput(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t, "--push.max-body-bytes", "64KiB")
	now := time.Now()
	url := "http://" + addr + "/api/v1/push"
	good := rwBody(t, ts(now, 1, "__name__", "m"))
	big := make([]byte, 100<<10)
	for _, tc := range []struct {
		name     string
		token    string
		ctype    string
		enc      string
		body     []byte
		code     int
		contains string
	}{
		{"no token", "", "application/x-protobuf", "snappy", good, 401, "bearer token"},
		{"wrong token", "nope", "application/x-protobuf", "snappy", good, 401, "bearer token"},
		{"ops token", opsToken, "application/x-protobuf", "snappy", good, 403, "agency credential"},
		{"plan phase", "planned-token", "application/x-protobuf", "snappy", good, 403, "phase plan"},
		{"wrong content type", alphaToken, "application/json", "snappy", good, 415, "Content-Type"},
		{"unknown proto message", alphaToken, "application/x-protobuf;proto=foo.Bar", "snappy", good, 415, "foo.Bar"},
		{"wrong encoding", alphaToken, "application/x-protobuf", "gzip", good, 415, "Content-Encoding"},
		{"not snappy", alphaToken, "application/x-protobuf", "snappy", []byte("hello"), 400, "snappy"},
		{"malformed protobuf", alphaToken, "application/x-protobuf", "snappy", snappy.Encode(nil, []byte{0xff, 0xff, 0xff}), 400, "malformed remote write 1.0 protobuf"},
		{"body too large", alphaToken, "application/x-protobuf", "snappy", big, 413, "exceeds the limit"},
		{"too old", alphaToken, "application/x-protobuf", "snappy", rwBody(t, ts(now.Add(-2*time.Hour), 1, "__name__", "m")), 400, "too old"},
		{"future", alphaToken, "application/x-protobuf", "snappy", rwBody(t, ts(now.Add(time.Hour), 1, "__name__", "m")), 400, "future"},
		{"out of order in request", alphaToken, "application/x-protobuf", "snappy", rwBody(t, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: now.UnixMilli()}, {Value: 2, Timestamp: now.Add(-time.Second).UnixMilli()}},
		}), 400, "out of order"},
		{"empty label value", alphaToken, "application/x-protobuf", "snappy", rwBody(t, ts(now, 1, "__name__", "m", "env", "")), 400, `empty value for label "env"`},
		{"duplicate label", alphaToken, "application/x-protobuf", "snappy", rwBody(t, ts(now, 1, "__name__", "m", "a", "1", "a", "2")), 400, `duplicate label "a"`},
		{"no metric name", alphaToken, "application/x-protobuf", "snappy", rwBody(t, ts(now, 1, "a", "1")), 400, "no metric name"},
		{"too many samples", "small-token", "application/x-protobuf", "snappy", rwBody(t, manySamples(now, "m", 151)...), 413, "max_samples_per_request (150)"},
		{"too many labels", "small-token", "application/x-protobuf", "snappy", rwBody(t, ts(now, 1, "__name__", "m", "a", "1", "b", "2", "c", "3")), 400, "max_label_names_per_series (4)"},
		{"label value too long", "small-token", "application/x-protobuf", "snappy", rwBody(t, ts(now, 1, "__name__", "m", "a", strings.Repeat("x", 17))), 400, "max_label_value_length (16)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, url, tc.token, tc.ctype, tc.enc, tc.body)
			require.Equal(t, tc.code, r.code, r.body)
			require.Contains(t, r.errMsg(), tc.contains)
		})
	}
	// GET is refused, with the methods that are allowed.
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "POST", resp.Header.Get("Allow"))

	// Nothing of the refused requests was written ("nothing half-written").
	require.Empty(t, query(t, addr, opsToken, `m`))
	// NaN, +Inf and staleness markers are legal Prometheus values: accepted.
	r := pushRW(t, addr, alphaToken, ts(now, math.NaN(), "__name__", "nan_metric"), ts(now, math.Inf(1), "__name__", "inf_metric"))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, alphaToken, `inf_metric`), 1) }, 10*time.Second, 100*time.Millisecond)

	// OTLP bad input.
	otlpURL := "http://" + addr + "/otlp/v1/metrics"
	r = post(t, otlpURL, alphaToken, "text/plain", "", []byte("x"))
	require.Equal(t, 415, r.code, r.body)
	r = post(t, otlpURL, alphaToken, "application/x-protobuf", "", []byte{0xff, 0x01})
	require.Equal(t, 400, r.code, r.body)
	require.Contains(t, r.body, "malformed OTLP protobuf")
	r = post(t, otlpURL, alphaToken, "application/json", "", []byte(`{"resourceMetrics": [`))
	require.Equal(t, 400, r.code, r.body)
	require.Contains(t, r.body, "malformed OTLP JSON")
	r = post(t, otlpURL, alphaToken, "application/json", "br", []byte(`{}`))
	require.Equal(t, 415, r.code, r.body)
	r = post(t, otlpURL, alphaToken, "application/json", "", []byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"json_gauge","gauge":{"dataPoints":[{"asDouble":4,"timeUnixNano":"`+fmt.Sprint(now.UnixNano())+`"}]}}]}]}]}`))
	require.Equal(t, 200, r.code, r.body)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, alphaToken, `json_gauge`), 1) }, 10*time.Second, 100*time.Millisecond)
}

func manySamples(now time.Time, name string, n int) []prompb.TimeSeries {
	out := make([]prompb.TimeSeries, 0, n)
	for i := range n {
		out = append(out, ts(now, float64(i), "__name__", name, "i", fmt.Sprint(i%3)))
	}
	return dedupeSeries(out)
}

// dedupeSeries merges samples of equal label sets into one series, giving
// each a distinct, increasing timestamp.
func dedupeSeries(in []prompb.TimeSeries) []prompb.TimeSeries {
	idx := map[string]int{}
	var out []prompb.TimeSeries
	for _, s := range in {
		k := fmt.Sprint(s.Labels)
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, prompb.TimeSeries{Labels: s.Labels})
			i = len(out) - 1
		}
		smp := s.Samples[0]
		smp.Timestamp += int64(len(out[i].Samples))
		out[i].Samples = append(out[i].Samples, smp)
	}
	return out
}

func TestPushLimits(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t)
	now := time.Now().Add(-time.Minute)

	// Series limit: 5 series; 8 new ones → 5 stored, 400 naming the limit.
	var series []prompb.TimeSeries
	for i := range 8 {
		series = append(series, ts(now, 1, "__name__", "s", "i", fmt.Sprint(i)))
	}
	r := pushRW(t, addr, "small-token", series...)
	require.Equal(t, http.StatusBadRequest, r.code, r.body)
	require.Contains(t, r.body, "max_global_series_per_user (5)")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, opsToken, `s{agency="small"}`), 5) }, 10*time.Second, 100*time.Millisecond)
	// Known series still accepted.
	r = pushRW(t, addr, "small-token", ts(now.Add(time.Second), 2, "__name__", "s", "i", "0"))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	// Out of order against what was routed before: refused with 400.
	r = pushRW(t, addr, "small-token", ts(now.Add(-time.Second), 2, "__name__", "s", "i", "0"))
	require.Equal(t, http.StatusBadRequest, r.code, r.body)
	require.Contains(t, r.body, "out-of-order")

	// Rate limit: burst 200 at 100/s. Two requests of 140 samples in a row:
	// the second is over the limit → 429 with Retry-After.
	r = pushRW(t, addr, "small-token", dedupeSeries(manyOf(now.Add(2*time.Second), "s", "i", "1", 140))...)
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	r = pushRW(t, addr, "small-token", dedupeSeries(manyOf(now.Add(3*time.Second), "s", "i", "1", 140))...)
	require.Equal(t, http.StatusTooManyRequests, r.code, r.body)
	require.NotEmpty(t, r.retryAfter)
	require.Contains(t, r.body, "ingestion_rate")

	// The refusals are counted per agency and reason.
	resp, err := metricsGet(addr)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `samdrift_discarded_samples_total{agency="small",reason="max_global_series_per_user"} 3`)
	require.Contains(t, string(b), `samdrift_discarded_samples_total{agency="small",reason="out_of_order"} 1`)
}

func manyOf(at time.Time, name, k, v string, n int) []prompb.TimeSeries {
	out := make([]prompb.TimeSeries, n)
	for i := range out {
		out[i] = ts(at, float64(i), "__name__", name, k, v)
	}
	return out
}

// TestFloodingAgencyDoesNotDelayOthers: "small" pushes far beyond its rate
// limit from several senders while alpha pushes normally. small is shed with
// 429; every alpha push is accepted promptly and stored.
func TestFloodingAgencyDoesNotDelayOthers(t *testing.T) {
	addr := startPushNode(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := rwBody(t, ts(time.Now(), float64(i), "__name__", "flood", "w", fmt.Sprint(w)))
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/push", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer small-token")
				req.Header.Set("Content-Encoding", "snappy")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	var worst time.Duration
	for i := range 20 {
		r := pushRW(t, addr, alphaToken, ts(time.Now(), float64(i), "__name__", "steady"))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
		worst = max(worst, r.took)
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("flood responses: %v; alpha's slowest push: %s", codes, worst)
	require.Positive(t, codes[http.StatusTooManyRequests], "the flood must be shed")
	// Each alpha push returns only once routed, so this bounds the delay the
	// flood adds; the verdict timeout (10s) is what a blocked router would cost.
	require.Less(t, worst, 3*time.Second)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s := query(c, addr, alphaToken, `count_over_time(steady[5m])`)
		assert.True(c, len(s) == 1 && s[0].Value[1] == "20")
	}, 10*time.Second, 100*time.Millisecond)
}

// TestPprof: with --web.enable-pprof the process starts (the profile routes
// once conflicted with the 405 fallback and panicked at startup), ops get
// the profiles and an agency gets 403.
func TestPprof(t *testing.T) {
	t.Parallel()
	addr := startPushNode(t, "--web.enable-pprof")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/symbol", "/debug/pprof/profile?seconds=1"} {
		r, err := client(addr, opsToken).Get(path)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.Status, path)
		r, err = client(addr, alphaToken).Get(path)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, r.Status, path)
	}
	r, err := client(addr, opsToken).Do(http.MethodPost, "/debug/pprof/heap", "", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusMethodNotAllowed, r.Status)
}
