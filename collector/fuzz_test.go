package collector

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

func rw1Seed(t testing.TB) []byte {
	raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: 1700000000000}},
	}}}).Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func rw2Seed(t testing.TB) []byte {
	st := writev2.NewSymbolTable()
	refs := st.SymbolizeLabels(labelsOf("__name__", "up", "job", "x"), nil)
	req := &writev2.Request{Symbols: st.Symbols(), Timeseries: []writev2.TimeSeries{{
		LabelsRefs: refs, Samples: []writev2.Sample{{Value: 1, Timestamp: 1700000000000}},
	}}}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func otlpSeed(t testing.TB, json bool) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "svc")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("requests")
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetIntValue(3)
	dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000000, 0)))
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	var b []byte
	var err error
	if json {
		b, err = req.MarshalJSON()
	} else {
		b, err = req.MarshalProto()
	}
	require.NoError(t, err)
	return b
}

func TestDecodeRemoteWrite2(t *testing.T) {
	wr, proto, herr := DecodeRemoteWrite("application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", rw2Seed(t), 1<<20)
	require.Nil(t, herr)
	require.Equal(t, "remote_write_2", proto)
	require.Len(t, wr.Timeseries, 1)
	require.Equal(t, []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}}, wr.Timeseries[0].Labels)
	require.Equal(t, 1.0, wr.Timeseries[0].Samples[0].Value)

	// A body whose decompressed size is over the limit is refused before decoding.
	_, _, herr = DecodeRemoteWrite("application/x-protobuf", "snappy", rw1Seed(t), 10)
	require.Equal(t, http.StatusRequestEntityTooLarge, herr.Code)
}

func TestDecodeOTLP(t *testing.T) {
	for _, json := range []bool{false, true} {
		ct := otlpProto
		if json {
			ct = otlpJSON
		}
		wr, _, herr := DecodeOTLP(ct, "", otlpSeed(t, json), 1<<20)
		require.Nil(t, herr)
		names := map[string]bool{}
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					names[l.Value] = true
				}
			}
		}
		require.True(t, names["requests_total"], "%v", names)
	}
}

// FuzzDecodeRemoteWrite: no input makes the remote_write decoder panic, and
// whatever it accepts can be put on the bus.
func FuzzDecodeRemoteWrite(f *testing.F) {
	f.Add("application/x-protobuf", "snappy", rw1Seed(f))
	f.Add("application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", rw2Seed(f))
	f.Add("", "", []byte{})
	f.Fuzz(func(t *testing.T, ctype, enc string, body []byte) {
		wr, _, herr := DecodeRemoteWrite(ctype, enc, body, 1<<20)
		if herr != nil {
			require.GreaterOrEqual(t, herr.Code, 400)
			require.Less(t, herr.Code, 500)
			return
		}
		_, err := wr.Marshal()
		require.NoError(t, err)
	})
}

// FuzzDecodeOTLP: no input makes the OTLP decoder (and Prometheus's
// translator behind it) panic.
func FuzzDecodeOTLP(f *testing.F) {
	f.Add(otlpProto, "", otlpSeed(f, false))
	f.Add(otlpJSON, "", otlpSeed(f, true))
	f.Add(otlpJSON, "gzip", []byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, ctype, enc string, body []byte) {
		wr, _, herr := DecodeOTLP(ctype, enc, body, 1<<20)
		if herr != nil {
			require.GreaterOrEqual(t, herr.Code, 400)
			require.Less(t, herr.Code, 500)
			return
		}
		_, err := wr.Marshal()
		require.NoError(t, err)
	})
}

func labelsOf(kv ...string) labels.Labels { return labels.FromStrings(kv...) }

// TestWriteFuzzCorpus writes the seed corpus files in testdata/fuzz when
// SAMDRIFT_WRITE_CORPUS is set (make fuzz-corpus); otherwise it checks they
// are there, so that `go test` always replays them.
func TestWriteFuzzCorpus(t *testing.T) {
	seeds := map[string][][3]any{
		"FuzzDecodeRemoteWrite": {
			{"application/x-protobuf", "snappy", rw1Seed(t)},
			{"application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", rw2Seed(t)},
			{"application/x-protobuf;proto=prometheus.WriteRequest", "", []byte("\x00")},
		},
		"FuzzDecodeOTLP": {
			{otlpProto, "", otlpSeed(t, false)},
			{otlpJSON, "", otlpSeed(t, true)},
			{otlpJSON, "", []byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asDouble":"NaN"}]}}]}]}]}`)},
		},
	}
	for fuzz, cases := range seeds {
		for i, c := range cases {
			path := filepath.Join("testdata", "fuzz", fuzz, fmt.Sprintf("seed-%d", i))
			content := fmt.Sprintf("go test fuzz v1\nstring(%q)\nstring(%q)\n[]byte(%q)\n", c[0], c[1], c[2])
			if os.Getenv("SAMDRIFT_WRITE_CORPUS") != "" {
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
				continue
			}
			_, err := os.Stat(path)
			require.NoError(t, err, "seed corpus missing: run SAMDRIFT_WRITE_CORPUS=1 go test ./collector -run TestWriteFuzzCorpus")
		}
	}
}

// FuzzDecodeWebhook: no Alertmanager webhook payload makes the decoder
// panic; refusals are 4xx, and what it accepts names its alerts.
func FuzzDecodeWebhook(f *testing.F) {
	f.Add("application/json", []byte(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"DiskFull","service":"web","agency":"beta"},"annotations":{"summary":"s"},"startsAt":"2026-11-01T10:00:00Z"}]}`))
	f.Add("application/json", []byte(`{"version":"4","alerts":[{"status":"resolved","labels":{"alertname":"X"},"startsAt":"2026-11-01T10:00:00Z","endsAt":"2026-11-01T11:00:00Z"}]}`))
	f.Add("", []byte(`{"version":"3"}`))
	f.Add("text/plain", []byte(`{}`))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		alerts, herr := DecodeWebhook(ctype, body, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 10000)
		if herr != nil {
			require.GreaterOrEqual(t, herr.Code, 400)
			require.Less(t, herr.Code, 500)
			return
		}
		require.NotEmpty(t, alerts)
		for _, a := range alerts {
			require.NotEmpty(t, a.Labels["alertname"])
		}
	})
}
