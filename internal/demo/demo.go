// Package demo simulates the demo agencies' services: each one serves
// Prometheus metrics and a health endpoint, and some fail on a schedule, so
// that a newcomer sees data, alerts and incidents within minutes.
package demo

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/samdrift/samdrift/catalogue"
)

// PathPrefix is where simulated services are served.
const PathPrefix = "/demo/sim/"

// Tokens are the demo catalogue's public tokens, by credential name.
var Tokens = map[string]string{
	"demo-noc-wall":   "ops-demo-token",
	"demo-onboarding": "admin-demo-token",
	"digg-demo":       "digg-demo-token",
	"ssc-demo":        "ssc-demo-token",
	"bo-demo":         "bo-demo-token",
	"ehm-demo":        "ehm-demo-token",
	"af-demo":         "af-demo-token",
	"pm-demo":         "pm-demo-token",
	"tullverket-demo": "tullverket-demo-token",
}

// Outage is a failure schedule: down for Length every Period, first at
// Offset after the simulator starts.
type Outage struct {
	Offset, Length, Period time.Duration
}

// Outages are the demo services that fail, by "agency/service".
var Outages = map[string]Outage{
	"bo/anmalan":             {Offset: 30 * time.Second, Length: 2 * time.Minute, Period: 10 * time.Minute},
	"ehm/apotek-api":         {Offset: 90 * time.Second, Length: time.Minute, Period: 6 * time.Minute},
	"tullverket/deklaration": {Offset: 3 * time.Minute, Length: 3 * time.Minute, Period: 15 * time.Minute},
}

// Simulator serves every simulated service.
type Simulator struct {
	start    time.Time
	now      func() time.Time
	mu       sync.Mutex
	services map[string]*service
}

type service struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
	users    prometheus.Gauge
	outage   *Outage
}

// New returns a simulator for every service of the catalogue.
func New(c *catalogue.Catalogue, now func() time.Time) *Simulator {
	if now == nil {
		now = time.Now
	}
	s := &Simulator{start: now(), now: now, services: map[string]*service{}}
	for _, a := range c.Agencies {
		for _, svc := range a.Services {
			key := a.ID + "/" + svc.ID
			sv := &service{reg: prometheus.NewRegistry()}
			sv.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "http_requests_total", Help: "Requests served by the simulated service.",
			}, []string{"code"})
			sv.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "http_request_duration_seconds", Help: "Request latency of the simulated service.",
				Buckets: prometheus.DefBuckets,
			})
			sv.users = prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "demo_active_users", Help: "Users currently signed in to the simulated service.",
			})
			sv.reg.MustRegister(sv.requests, sv.latency, sv.users)
			if o, ok := Outages[key]; ok {
				sv.outage = &o
			}
			s.services[key] = sv
		}
	}
	return s
}

// Down reports whether the service is in a scheduled outage now.
func (s *Simulator) Down(key string) bool {
	sv := s.services[key]
	if sv == nil || sv.outage == nil {
		return false
	}
	since := s.now().Sub(s.start) - sv.outage.Offset
	return since >= 0 && since%sv.outage.Period < sv.outage.Length
}

// Services lists the simulated services ("agency/service"), sorted.
func (s *Simulator) Services() []string {
	keys := make([]string, 0, len(s.services))
	for k := range s.services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ServeHTTP serves PathPrefix<agency>/<service>/{metrics,health}.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, PathPrefix)
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		http.NotFound(w, r)
		return
	}
	key := parts[0] + "/" + parts[1]
	sv := s.services[key]
	if sv == nil {
		http.NotFound(w, r)
		return
	}
	down := s.Down(key)
	s.simulateTraffic(sv, down)
	switch parts[2] {
	case "metrics":
		if down {
			http.Error(w, "simulated outage", http.StatusServiceUnavailable)
			return
		}
		promhttp.HandlerFor(sv.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	case "health":
		if down {
			http.Error(w, "simulated outage", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	default:
		http.NotFound(w, r)
	}
}

func (s *Simulator) simulateTraffic(sv *service, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 20 + rand.IntN(30)
	for range n {
		code := "200"
		if down {
			code = "503"
		} else if rand.IntN(200) == 0 {
			code = "500"
		}
		sv.requests.WithLabelValues(code).Inc()
		sv.latency.Observe(0.02 + rand.ExpFloat64()*0.05)
	}
	sv.users.Set(float64(100 + rand.IntN(50)))
}
