package collector

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// maxProbeBody bounds how much of an HTTP probe's response body is read.
const maxProbeBody = 1 << 20

// ProberOptions configure the availability prober.
type ProberOptions struct {
	// Filter, if set, keeps only the probes this collector owns (scale-out
	// sharding); the argument identifies the probe.
	Filter     func(key string) bool
	Bus        *bus.Bus
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	// TLSConfig is the base TLS configuration of HTTPS probes (the system's
	// roots when nil).
	TLSConfig *tls.Config
	Now       func() time.Time
}

// Prober runs the catalogue's availability probes and publishes their
// results with the metric names and meaning of the Prometheus blackbox
// exporter: probe_success, probe_duration_seconds, probe_http_status_code,
// probe_ssl_earliest_cert_expiry and so on. A probe that fails or times out
// records probe_success 0: there is never a missing sample for a run probe.
type Prober struct {
	opts    ProberOptions
	logger  *slog.Logger
	tracer  trace.Tracer
	metrics *proberMetrics

	mu    sync.Mutex
	loops map[string]context.CancelFunc
	wg    sync.WaitGroup
}

// NewProber returns a prober; call Apply to start probing.
func NewProber(o ProberOptions) *Prober {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Prober{
		opts: o, logger: o.Logger, tracer: o.Tracer.Tracer("github.com/samdrift/samdrift/collector"),
		metrics: newProberMetrics(o.Registerer), loops: map[string]context.CancelFunc{},
	}
}

// ProbeSpec is one probe with its effective timing.
type ProbeSpec struct {
	Agency, Service string
	Probe           catalogue.Probe
	Interval        time.Duration
	Timeout         time.Duration
}

func (s ProbeSpec) key() string {
	return fmt.Sprintf("%s/%s %+v %s %s", s.Agency, s.Service, s.Probe, s.Interval, s.Timeout)
}

// Specs lists the probes of every agency that accepts data.
func Specs(c *catalogue.Catalogue) []ProbeSpec {
	var out []ProbeSpec
	for _, a := range c.Agencies {
		if !a.Phase.AcceptsData() {
			continue
		}
		for _, svc := range a.Services {
			for _, pr := range svc.Probes {
				iv := time.Duration(pr.Interval)
				if iv == 0 {
					iv = time.Duration(c.Defaults.ScrapeInterval)
				}
				to := time.Duration(pr.Timeout)
				if to == 0 {
					to = min(10*time.Second, iv)
				}
				out = append(out, ProbeSpec{Agency: a.ID, Service: svc.ID, Probe: pr, Interval: iv, Timeout: to})
			}
		}
	}
	return out
}

// Apply starts the catalogue's new probes and stops those it no longer has.
func (p *Prober) Apply(c *catalogue.Catalogue) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]ProbeSpec{}
	for _, s := range Specs(c) {
		if p.opts.Filter != nil && !p.opts.Filter(s.key()) {
			continue
		}
		want[s.key()] = s
	}
	for k, cancel := range p.loops {
		if _, ok := want[k]; !ok {
			cancel()
			delete(p.loops, k)
		}
	}
	for k, s := range want {
		if _, ok := p.loops[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		p.loops[k] = cancel
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.loop(ctx, s)
		}()
	}
}

// Stop stops every probe and waits for running ones to finish.
func (p *Prober) Stop() {
	p.mu.Lock()
	for k, cancel := range p.loops {
		cancel()
		delete(p.loops, k)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Prober) loop(ctx context.Context, s ProbeSpec) {
	// Spread probes over the interval, as Prometheus spreads scrapes.
	select {
	case <-time.After(rand.N(s.Interval)):
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		p.runOnce(ctx, s)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Prober) runOnce(ctx context.Context, s ProbeSpec) {
	start := p.opts.Now()
	res := Run(ctx, s, p.opts.TLSConfig)
	if ctx.Err() != nil {
		return // stopped mid-probe: the result means nothing
	}
	ctx, span := p.tracer.Start(ctx, "collector.probe")
	defer span.End()
	data, err := bus.EncodeMetrics(&prompb.WriteRequest{Timeseries: res.Series(start)})
	if err != nil {
		return
	}
	msg := &nats.Msg{Subject: bus.IngestSubject(bus.KindMetrics, bus.SourceProbe, s.Agency, s.Service), Data: data, Header: nats.Header{}}
	bus.InjectTrace(ctx, msg)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.opts.Bus.Publish(pctx, msg, ""); err != nil {
		p.metrics.publishFailures.Inc()
		p.logger.Warn("probe result not published", "agency", s.Agency, "service", s.Service, "err", err)
		return
	}
	p.metrics.probes.WithLabelValues(res.Prober, strconv.FormatBool(res.Success)).Inc()
}

// Result is the outcome of one probe.
type Result struct {
	Target  string
	Prober  string // http, tcp or dns
	Success bool
	// Metrics beyond probe_success and probe_duration_seconds, by name.
	Metrics  map[string]float64
	Duration time.Duration
	Err      error
}

// Series returns the result as blackbox-exporter series at time t.
func (r Result) Series(t time.Time) []prompb.TimeSeries {
	ts := t.UnixMilli()
	// The origin label marks the provider's own measurement: the SLA is
	// computed from it alone (an agency cannot send it; see tenancy).
	base := []prompb.Label{{Name: "instance", Value: r.Target}, {Name: "job", Value: "probe"}, {Name: "prober", Value: r.Prober},
		{Name: tenancy.OriginLabel, Value: tenancy.OriginProbe}}
	mk := func(name string, v float64, extra ...prompb.Label) prompb.TimeSeries {
		ls := append([]prompb.Label{{Name: "__name__", Value: name}}, base...)
		ls = append(ls, extra...)
		slices.SortFunc(ls, func(a, b prompb.Label) int {
			switch {
			case a.Name < b.Name:
				return -1
			case a.Name > b.Name:
				return 1
			}
			return 0
		})
		return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: ts}}}
	}
	success := 0.0
	if r.Success {
		success = 1
	}
	out := []prompb.TimeSeries{
		mk("probe_success", success),
		mk("probe_duration_seconds", r.Duration.Seconds()),
	}
	names := make([]string, 0, len(r.Metrics))
	for n := range r.Metrics {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out = append(out, mk(n, r.Metrics[n]))
	}
	return out
}

// Run runs one probe with its timeout.
func Run(ctx context.Context, s ProbeSpec, tlsConfig *tls.Config) Result {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	start := time.Now()
	var r Result
	switch {
	case s.Probe.HTTP != "":
		r = probeHTTP(ctx, s.Probe, tlsConfig)
	case s.Probe.TCP != "":
		r = probeTCP(ctx, s.Probe)
	case s.Probe.DNS != "":
		r = probeDNS(ctx, s.Probe)
	}
	r.Duration = time.Since(start)
	return r
}

func probeHTTP(ctx context.Context, pr catalogue.Probe, base *tls.Config) Result {
	r := Result{Target: pr.HTTP, Prober: "http", Metrics: map[string]float64{
		"probe_http_status_code": 0, "probe_http_content_length": 0, "probe_http_ssl": 0, "probe_failed_due_to_regex": 0,
	}}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		tlsCfg = base.Clone()
	}
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: tlsCfg, Proxy: nil,
		DialContext: (&net.Dialer{}).DialContext,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.HTTP, nil)
	if err != nil {
		r.Err = err
		return r
	}
	req.Header.Set("User-Agent", "Samdrift-Prober/1")
	resp, err := client.Do(req)
	if err != nil {
		r.Err = err
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		r.Err = fmt.Errorf("read body: %w", err)
		return r
	}
	r.Metrics["probe_http_status_code"] = float64(resp.StatusCode)
	r.Metrics["probe_http_content_length"] = float64(resp.ContentLength)
	if resp.TLS != nil {
		r.Metrics["probe_http_ssl"] = 1
		var earliest time.Time
		for _, c := range resp.TLS.PeerCertificates {
			if earliest.IsZero() || c.NotAfter.Before(earliest) {
				earliest = c.NotAfter
			}
		}
		if !earliest.IsZero() {
			r.Metrics["probe_ssl_earliest_cert_expiry"] = float64(earliest.Unix())
		}
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(pr.ExpectStatus) > 0 {
		ok = slices.Contains(pr.ExpectStatus, resp.StatusCode)
	}
	if !ok {
		r.Err = fmt.Errorf("unexpected status %d", resp.StatusCode)
		return r
	}
	if pr.ExpectBody != "" {
		re, err := regexp.Compile(pr.ExpectBody)
		if err != nil || !re.Match(body) {
			r.Metrics["probe_failed_due_to_regex"] = 1
			r.Err = fmt.Errorf("body does not match %q", pr.ExpectBody)
			return r
		}
	}
	r.Success = true
	return r
}

func probeTCP(ctx context.Context, pr catalogue.Probe) Result {
	r := Result{Target: pr.TCP, Prober: "tcp", Metrics: map[string]float64{}}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", pr.TCP)
	if err != nil {
		r.Err = err
		return r
	}
	_ = c.Close()
	r.Success = true
	return r
}

func probeDNS(ctx context.Context, pr catalogue.Probe) Result {
	server := pr.DNS
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	r := Result{Target: server, Prober: "dns", Metrics: map[string]float64{"probe_dns_answer_rrs": 0}}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, server)
	}}
	start := time.Now()
	addrs, err := res.LookupHost(ctx, pr.QueryName)
	r.Metrics["probe_dns_lookup_time_seconds"] = time.Since(start).Seconds()
	if err != nil {
		r.Err = err
		return r
	}
	r.Metrics["probe_dns_answer_rrs"] = float64(len(addrs))
	r.Success = len(addrs) > 0
	return r
}

type proberMetrics struct {
	probes          *prometheus.CounterVec
	publishFailures prometheus.Counter
}

func newProberMetrics(reg prometheus.Registerer) *proberMetrics {
	m := &proberMetrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_collector_probes_total",
			Help: "Probes run, by prober and success.",
		}, []string{"prober", "success"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samdrift_collector_probe_publish_failures_total",
			Help: "Probe results that could not be published to the bus.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.probes, m.publishFailures)
	}
	return m
}
