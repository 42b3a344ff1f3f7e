package router

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	batches  *prometheus.CounterVec
	samples  *prometheus.CounterVec
	rejected *prometheus.CounterVec
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
	}
	if reg != nil {
		reg.MustRegister(m.batches, m.samples, m.rejected)
	}
	return m
}
