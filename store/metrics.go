package store

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	appended   *prometheus.CounterVec
	discarded  *prometheus.CounterVec
	badBatches *prometheus.CounterVec
	// appendFailures counts failed transactions (each retried in order).
	appendFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_store_appended_samples_total",
			Help: "Samples appended to an agency's TSDB.",
		}, []string{"agency"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_store_discarded_samples_total",
			Help: "Samples the agency's TSDB refused, by reason.",
		}, []string{"agency", "reason"}),
		badBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_store_undecodable_batches_total",
			Help: "Metrics batches dropped because they could not be decoded.",
		}, []string{"agency"}),
		appendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_store_append_failures_total",
			Help: "TSDB transactions that failed (disk full, head closing); the batch is retried in order until it is stored.",
		}, []string{"agency"}),
	}
	if reg != nil {
		reg.MustRegister(m.appended, m.discarded, m.badBatches, m.appendFailures, &headCollector{s: s})
	}
	return m
}

var (
	headSeriesDesc = prometheus.NewDesc("samdrift_store_head_series",
		"Active series in the head block of an agency's TSDB.", []string{"agency"}, nil)
	storedBytesDesc = prometheus.NewDesc("samdrift_store_blocks_bytes",
		"Bytes of persisted blocks in an agency's TSDB.", []string{"agency"}, nil)
)

// headCollector reports per-agency TSDB figures at scrape time.
type headCollector struct{ s *Store }

func (c *headCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- headSeriesDesc
	ch <- storedBytesDesc
}

func (c *headCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	for id, adb := range c.s.dbs {
		ch <- prometheus.MustNewConstMetric(headSeriesDesc, prometheus.GaugeValue, float64(adb.db.Head().NumSeries()), id)
		var size int64
		for _, b := range adb.db.Blocks() {
			size += b.Size()
		}
		ch <- prometheus.MustNewConstMetric(storedBytesDesc, prometheus.GaugeValue, float64(size), id)
	}
}
