package router

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	batches   *prometheus.CounterVec
	samples   *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	discarded *prometheus.CounterVec
	renamed   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_router_batches_total",
			Help: "Batches routed to an agency, by kind.",
		}, []string{"agency", "kind"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_router_samples_total",
			Help: "Samples routed to an agency.",
		}, []string{"agency"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_router_rejected_batches_total",
			Help: "Batches the router could not assign to an agency, by reason.",
		}, []string{"reason"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_discarded_samples_total",
			Help: "Samples the router refused for an agency, by the limit or rule that refused them.",
		}, []string{"agency", "reason"}),
		renamed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_ingest_reserved_renamed_samples_total",
			Help: "Samples an agency sent under a name or label reserved for the provider's own series (sla:*, samdrift_*, ALERTS, samdrift_origin): stored renamed exported_*, never as the provider's.",
		}, []string{"agency"}),
	}
	if reg != nil {
		reg.MustRegister(m.batches, m.samples, m.rejected, m.discarded, m.renamed)
	}
	return m
}

var activeSeriesDesc = prometheus.NewDesc("samdrift_router_active_series",
	"Series the router saw for an agency within the last hour (what max_global_series_per_user counts).", []string{"agency"}, nil)

type activeSeriesCollector struct{ l *limiter }

func (c activeSeriesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- activeSeriesDesc }

func (c activeSeriesCollector) Collect(ch chan<- prometheus.Metric) {
	for id, n := range c.l.activeSeries() {
		ch <- prometheus.MustNewConstMetric(activeSeriesDesc, prometheus.GaugeValue, float64(n), id)
	}
}
