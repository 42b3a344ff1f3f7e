package bus

import (
	"strconv"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// benchRequest is one sender request of the ingest benchmark: 2,000
// series with the label shape of a node exporter, one sample each.
func benchRequest(b *testing.B) []byte {
	wr := &prompb.WriteRequest{}
	for i := range 2000 {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "bench_metric_" + strconv.Itoa(i%50)},
				{Name: "instance", Value: "host-" + strconv.Itoa(i/50) + ":9100"},
				{Name: "job", Value: "node"},
				{Name: "mode", Value: "idle"},
				{Name: "series", Value: strconv.Itoa(i)},
			},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1_700_000_000_000}},
		})
	}
	raw, err := wr.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// BenchmarkDecodeMetrics compares the generated protobuf code with the
// reusing decoder the router and store use, per 2,000-sample request.
func BenchmarkDecodeMetrics(b *testing.B) {
	body := benchRequest(b)
	b.Run("prompb.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			raw, err := snappy.Decode(nil, body)
			if err != nil {
				b.Fatal(err)
			}
			var wr prompb.WriteRequest
			if err := wr.Unmarshal(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MetricsDecoder", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		var d MetricsDecoder
		var wr prompb.WriteRequest
		for b.Loop() {
			if err := d.Decode(body, &wr); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeMetrics: re-encoding a routed request for the agency stream.
func BenchmarkEncodeMetrics(b *testing.B) {
	var d MetricsDecoder
	var wr prompb.WriteRequest
	if err := d.Decode(benchRequest(b), &wr); err != nil {
		b.Fatal(err)
	}
	var e MetricsEncoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(&wr); err != nil {
			b.Fatal(err)
		}
	}
}
