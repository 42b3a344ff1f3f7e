package collector

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"gopkg.in/yaml.v3"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// sourceLabel carries a target's bus source through the scrape manager. Labels
// starting with "__" never reach the samples.
const sourceLabel = "__samdrift_source"

// maxSeriesPerMessage splits very large scrapes into several bus messages.
const maxSeriesPerMessage = 5000

// Options configure a scraper.
type Options struct {
	Bus        *bus.Bus
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	// Filter, if set, keeps only the targets this collector owns (scale-out
	// sharding); the argument is the job name and target address.
	Filter func(job, address string) bool
}

// Scraper scrapes the catalogue's targets.
type Scraper struct {
	opts    Options
	logger  *slog.Logger
	tracer  trace.Tracer
	manager *scrape.Manager
	tsets   chan map[string][]*targetgroup.Group
	metrics *scrapeMetrics

	mu    sync.Mutex
	jobs  map[string]bool
	owned int // targets this collector scrapes (-1 before the first Apply)
}

// NewScraper returns a scraper; call Apply with a catalogue and Run.
func NewScraper(o Options) (*Scraper, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	s := &Scraper{
		opts:   o,
		logger: o.Logger,
		tracer: o.Tracer.Tracer("github.com/samdrift/samdrift/collector"),
		tsets:  make(chan map[string][]*targetgroup.Group, 1),
		jobs:   map[string]bool{},
		owned:  -1,
	}
	s.metrics = newScrapeMetrics(o.Registerer)
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := scrape.NewManager(&scrape.Options{
		PassMetadataInContext:   true, // puts the target in the appender's context
		DiscoveryReloadInterval: model.Duration(time.Second),
	}, o.Logger, nil, nil, appendable{s}, reg)
	if err != nil {
		return nil, fmt.Errorf("scrape manager: %w", err)
	}
	s.manager = m
	return s, nil
}

// Run scrapes until Stop is called.
func (s *Scraper) Run() error { return s.manager.Run(s.tsets) }

// Stop stops every scrape loop.
func (s *Scraper) Stop() { s.manager.Stop() }

// JobName is the scrape pool name of a service's i-th scrape entry.
func JobName(agency, service string, i int) string {
	return agency + "/" + service + "/" + strconv.Itoa(i)
}

// Apply scrapes the targets of every agency that accepts data.
func (s *Scraper) Apply(c *catalogue.Catalogue) error {
	var cfgs []map[string]any
	var owned, total int
	groups := map[string][]*targetgroup.Group{}
	for _, a := range c.Agencies {
		if !a.Phase.AcceptsData() {
			continue
		}
		for _, svc := range a.Services {
			for i, sc := range svc.Scrape {
				job := JobName(a.ID, svc.ID, i)
				jobLabel := sc.JobName
				if jobLabel == "" {
					jobLabel = svc.ID
				}
				tg := &targetgroup.Group{
					Source: job,
					Labels: model.LabelSet{
						"job":       model.LabelValue(jobLabel),
						sourceLabel: model.LabelValue(bus.SourceScrape + "." + a.ID + "." + svc.ID),
					},
				}
				for _, t := range sc.Targets {
					total++
					if s.opts.Filter != nil && !s.opts.Filter(job, t) {
						continue
					}
					owned++
					tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(t)})
				}
				// Prometheus's own scrape_config, from the entry's fields.
				cfgs = append(cfgs, c.PrometheusConfig(sc, job))
				groups[job] = []*targetgroup.Group{tg}
			}
		}
	}
	if owned != s.owned {
		s.logger.Info("scrape targets", "owned", owned, "of", total)
		s.owned = owned
	}
	// Going through Prometheus's own config loader gives every scrape
	// config exactly Prometheus's defaults and validation.
	raw, err := yaml.Marshal(map[string]any{"scrape_configs": cfgs})
	if err != nil {
		return err
	}
	pcfg, err := config.Load(string(raw), s.logger)
	if err != nil {
		return fmt.Errorf("build scrape config: %w", err)
	}
	if err := s.manager.ApplyConfig(pcfg); err != nil {
		return fmt.Errorf("apply scrape config: %w", err)
	}
	// Jobs that disappeared get an empty group so their loops stop.
	s.mu.Lock()
	for job := range s.jobs {
		if _, ok := groups[job]; !ok {
			groups[job] = []*targetgroup.Group{{Source: job}}
		}
	}
	s.jobs = map[string]bool{}
	for job := range groups {
		s.jobs[job] = true
	}
	s.mu.Unlock()
	// Only the newest target set matters: replace an unread one.
	select {
	case <-s.tsets:
	default:
	}
	s.tsets <- groups
	return nil
}

type appendable struct{ s *Scraper }

func (a appendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	src := ""
	if t, ok := scrape.TargetFromContext(ctx); ok {
		src = t.GetValue(sourceLabel)
	}
	return &appender{s: a.s, ctx: ctx, source: src}
}

// appender collects one scrape and publishes it on Commit. Commit returns
// only when JetStream has stored the batch.
type appender struct {
	s      *Scraper
	ctx    context.Context
	source string
	series []prompb.TimeSeries
}

func (a *appender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
	switch {
	case fh != nil:
		ts.Histograms = []prompb.Histogram{prompb.FromFloatHistogram(t, fh)}
	case h != nil:
		ts.Histograms = []prompb.Histogram{prompb.FromIntHistogram(t, h)}
	default:
		ts.Samples = []prompb.Sample{{Value: v, Timestamp: t}}
	}
	a.series = append(a.series, ts)
	// The scrape cache keeps the ref; any stable non-zero value will do.
	return storage.SeriesRef(ls.Hash() | 1), nil
}

// reportNames are the series a Prometheus scrape loop appends after a
// target's own, in this order: the health of the scrape (five, or eight
// with extra scrape metrics).
var reportNames = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
	"scrape_series_added", "scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes"}

// markOrigin sets the origin label on the scrape's own report series (the
// provider's measurement of the target's health) and moves a target's own
// origin label, on what it exposed, to exported_samdrift_origin: a target
// cannot pass its series off as the provider's.
func markOrigin(series []prompb.TimeSeries) {
	report := len(series)
	for _, n := range []int{8, 5} {
		if len(series) < n {
			continue
		}
		ok := true
		for j := range n {
			ok = ok && metricName(series[len(series)-n+j].Labels) == reportNames[j]
		}
		if ok {
			report = len(series) - n
			break
		}
	}
	for i := range series {
		ls := series[i].Labels
		if j, found := findLabel(ls, tenancy.OriginLabel); found {
			v := ls[j].Value
			ls = slices.Delete(ls, j, j+1)
			name := "exported_" + tenancy.OriginLabel
			for {
				if _, taken := findLabel(ls, name); !taken {
					break
				}
				name = "exported_" + name
			}
			ls = insertLabel(ls, prompb.Label{Name: name, Value: v})
		}
		if i >= report {
			ls = insertLabel(ls, prompb.Label{Name: tenancy.OriginLabel, Value: tenancy.OriginScrape})
		}
		series[i].Labels = ls
	}
}

func metricName(ls []prompb.Label) string {
	if i, ok := findLabel(ls, "__name__"); ok {
		return ls[i].Value
	}
	return ""
}

func findLabel(ls []prompb.Label, name string) (int, bool) {
	return slices.BinarySearchFunc(ls, name, func(l prompb.Label, n string) int { return strings.Compare(l.Name, n) })
}

func insertLabel(ls []prompb.Label, l prompb.Label) []prompb.Label {
	i, _ := findLabel(ls, l.Name)
	return slices.Insert(ls, i, l)
}

func (a *appender) Commit() error {
	if len(a.series) == 0 {
		return nil
	}
	markOrigin(a.series)
	if a.source == "" {
		return fmt.Errorf("scrape target without source")
	}
	subject := "ingest.metrics." + a.source
	ctx, span := a.s.tracer.Start(a.ctx, "collector.scrape",
		trace.WithAttributes(attribute.String("source", a.source), attribute.Int("series", len(a.series))))
	defer span.End()
	for start := 0; start < len(a.series); start += maxSeriesPerMessage {
		end := min(start+maxSeriesPerMessage, len(a.series))
		data, err := bus.EncodeMetrics(&prompb.WriteRequest{Timeseries: a.series[start:end]})
		if err != nil {
			return err
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		bus.InjectTrace(ctx, msg)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = a.s.opts.Bus.Publish(pctx, msg, "")
		cancel()
		if err != nil {
			a.s.metrics.publishFailures.Inc()
			return fmt.Errorf("publish scrape of %s: %w", a.source, err)
		}
	}
	a.s.metrics.published.Add(float64(len(a.series)))
	a.series = nil
	return nil
}

func (a *appender) Rollback() error {
	a.series = nil
	return nil
}

type scrapeMetrics struct {
	published       prometheus.Counter
	publishFailures prometheus.Counter
}

func newScrapeMetrics(reg prometheus.Registerer) *scrapeMetrics {
	m := &scrapeMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samdrift_collector_scraped_samples_published_total",
			Help: "Scraped samples published to the bus.",
		}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samdrift_collector_scrape_publish_failures_total",
			Help: "Scrapes that could not be published to the bus (their samples are lost, as a failed TSDB append is in Prometheus).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.publishFailures)
	}
	return m
}
