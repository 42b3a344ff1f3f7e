package store

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// BenchmarkAppendRequest: one routed 2,000-sample request decoded from the
// agency stream and appended to the agency's real TSDB head, with the
// series reference cache warm (the steady state of a scrape or push load).
func BenchmarkAppendRequest(b *testing.B) {
	c, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n"), "c.yaml")
	if err != nil {
		b.Fatal(err)
	}
	st, err := New(Options{Dir: filepath.Join(b.TempDir(), "tsdb")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Apply(c); err != nil {
		b.Fatal(err)
	}
	cons := &consumer{s: st, adb: st.dbs["alpha"]}
	wr := &prompb.WriteRequest{}
	for i := range 2000 {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "bench_metric_" + strconv.Itoa(i%50)},
				{Name: "agency", Value: "alpha"},
				{Name: "instance", Value: "host-" + strconv.Itoa(i/50) + ":9100"},
				{Name: "series", Value: strconv.Itoa(i)},
			},
			Samples: []prompb.Sample{{}},
		})
	}
	ts := int64(1_700_000_000_000)
	var got prompb.WriteRequest
	var sb labels.ScratchBuilder
	var enc bus.MetricsEncoder
	b.ReportAllocs()
	for b.Loop() {
		ts += 15_000
		for i := range wr.Timeseries {
			wr.Timeseries[i].Samples[0] = prompb.Sample{Value: float64(ts), Timestamp: ts}
		}
		data, err := enc.Encode(wr)
		if err != nil {
			b.Fatal(err)
		}
		if err := cons.dec.Decode(data, &got); err != nil {
			b.Fatal(err)
		}
		app := cons.adb.db.Appender(context.Background())
		if n := cons.adb.appendRequest(st, app, &got, &sb); n != len(wr.Timeseries) {
			b.Fatalf("appended %d of %d", n, len(wr.Timeseries))
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(wr.Timeseries))*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
