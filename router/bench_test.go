package router

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/samdrift/samdrift/catalogue"
)

// benchSeries is one 2,000-series request as senders shape it.
func benchSeries() [][]prompb.Label {
	out := make([][]prompb.Label, 2000)
	for i := range out {
		out[i] = []prompb.Label{
			{Name: "__name__", Value: "bench_metric_" + strconv.Itoa(i%50)},
			{Name: "instance", Value: "host-" + strconv.Itoa(i/50) + ":9100"},
			{Name: "job", Value: "node"},
			{Name: "series", Value: strconv.Itoa(i)},
		}
	}
	return out
}

// reset refills wr from the template, reusing its label slices (with
// headroom for the owned labels, as the decoder leaves).
func reset(wr *prompb.WriteRequest, tmpl [][]prompb.Label, ts int64) {
	if len(wr.Timeseries) != len(tmpl) {
		wr.Timeseries = make([]prompb.TimeSeries, len(tmpl))
		for i := range tmpl {
			wr.Timeseries[i].Labels = make([]prompb.Label, 0, len(tmpl[i])+2)
			wr.Timeseries[i].Samples = make([]prompb.Sample, 1)
		}
	}
	wr.Timeseries = wr.Timeseries[:len(tmpl)]
	for i := range tmpl {
		wr.Timeseries[i].Labels = append(wr.Timeseries[i].Labels[:0], tmpl[i]...)
		wr.Timeseries[i].Samples = wr.Timeseries[i].Samples[:1]
		wr.Timeseries[i].Samples[0] = prompb.Sample{Value: 1, Timestamp: ts}
	}
}

// BenchmarkOwnedLabels: setting agency and exported_agency on a request,
// the in-place path (agencies without relabel rules) against the general
// labels.Builder path.
func BenchmarkOwnedLabels(b *testing.B) {
	src := source{agency: &catalogue.Agency{ID: "alpha"}}
	tmpl := benchSeries()
	for _, c := range []struct {
		name string
		f    func(*prompb.WriteRequest, source) labelled
	}{{"in-place", setOwnedLabels}, {"builder", relabelWithBuilder}} {
		b.Run(c.name, func(b *testing.B) {
			var wr prompb.WriteRequest
			b.ReportAllocs()
			for b.Loop() {
				reset(&wr, tmpl, 1)
				c.f(&wr, src)
			}
		})
	}
}

// BenchmarkCheckAndAdmit: validity checks, then the rate, series and
// ordering limits, per 2,000-series request.
func BenchmarkCheckAndAdmit(b *testing.B) {
	cat, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: a, name: A, phase: run, limits: {ingestion_rate: 1e12, ingestion_burst_size: 1000000000, max_global_series_per_user: 1000000}}\n"), "c.yaml")
	if err != nil {
		b.Fatal(err)
	}
	a := cat.Agency("a")
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(func() time.Time { return now }, nil)
	tmpl := benchSeries()
	var wr prompb.WriteRequest
	ts := now.UnixMilli()
	b.ReportAllocs()
	for b.Loop() {
		ts += 1000
		reset(&wr, tmpl, ts)
		for i := range wr.Timeseries {
			if reason := checkRaw(&wr.Timeseries[i]); reason != "" {
				b.Fatal(reason)
			}
		}
		var o outcome
		l.admit(a, &wr, &o, false)
		if o.accepted != len(tmpl) {
			b.Fatalf("accepted %d of %d: %v", o.accepted, len(tmpl), o.discarded)
		}
	}
}
