package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// Exporter sends every agency's metrics, as the bus holds them (routed
// batches and rule outputs alike), to a scale-out engine's remote-write
// endpoint with the agency as tenant. It is how the engine is fed where no
// process keeps a local TSDB to tail (several processes, or engine mode):
// each agency has one durable consumer, "export-<agency>", shared by every
// process that exports, one message in flight at a time so that the
// engine receives each series in order. A message is acknowledged only
// once the engine took it; while the engine fails it is retried in place
// (backlog stays on the bus, bounded by the stream's retention), and one
// the engine refuses for good (4xx other than 429) goes to the agency's
// dead letters.
type Exporter struct {
	o      ExporterOptions
	client *http.Client

	mu      sync.Mutex
	ctx     context.Context
	cat     *catalogue.Catalogue
	running map[string]context.CancelFunc
	wg      sync.WaitGroup

	sent, failed *prometheus.CounterVec
	backlog, lag *prometheus.GaugeVec
	// endpoint is the index, in URL then Fallbacks, of the endpoint in use.
	endpoint atomic.Int32
}

// ExporterOptions configure an exporter.
type ExporterOptions struct {
	Bus        *bus.Bus
	Remote     *RemoteConfig
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewExporter returns an exporter; Run it, and Apply catalogues.
func NewExporter(o ExporterOptions) *Exporter {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	timeout := o.Remote.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	e := &Exporter{o: o, client: &http.Client{Timeout: timeout}, running: map[string]context.CancelFunc{},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_export_samples_total", Help: "Samples the engine took from the bus, per agency.",
		}, []string{"agency"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_export_failures_total", Help: "Remote-write requests to the engine that failed (and were retried or dead-lettered), per agency.",
		}, []string{"agency"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "samdrift_export_backlog_messages", Help: "Batches on the bus not yet taken by the engine, per agency (as of the batch being exported).",
		}, []string{"agency"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "samdrift_export_lag_seconds", Help: "Age of the batch being exported (how far the engine is behind the bus), per agency.",
		}, []string{"agency"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(e.sent, e.failed, e.backlog, e.lag)
	}
	return e
}

func exportSpec(agency string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Stream: bus.StreamMetrics, Durable: "export-" + agency, Filter: bus.AgencySubject(agency, bus.KindMetrics),
		AckWait: time.Minute, MaxAckPending: 1,
	}
}

// Apply exports the catalogue's agencies (from when Run is called) and
// stops exporting the others.
func (e *Exporter) Apply(c *catalogue.Catalogue) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cat = c
	if e.ctx != nil {
		e.sync()
	}
	return nil
}

func (e *Exporter) sync() {
	c := e.cat
	if c == nil {
		return
	}
	want := map[string]bool{}
	for _, a := range c.Agencies {
		want[a.ID] = true
		if e.running[a.ID] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(e.ctx)
		e.running[a.ID] = cancel
		e.wg.Go(func() { e.runAgency(ctx, a.ID) })
	}
	for id, cancel := range e.running {
		if !want[id] {
			cancel()
			delete(e.running, id)
		}
	}
}

// Run exports until ctx ends.
func (e *Exporter) Run(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	e.sync()
	e.mu.Unlock()
	<-ctx.Done()
	e.wg.Wait()
	return nil
}

func (e *Exporter) runAgency(ctx context.Context, agency string) {
	logger := e.o.Logger.With("agency", agency)
	_ = e.o.Bus.Consume(ctx, exportSpec(agency), 1, logger, func(ctx context.Context, batch []jetstream.Msg) {
		for _, m := range batch {
			e.export(ctx, agency, m, logger)
		}
	})
}

// export sends one message until the engine takes or refuses it.
func (e *Exporter) export(ctx context.Context, agency string, m jetstream.Msg, logger *slog.Logger) {
	var wr prompb.WriteRequest
	if err := bus.DecodeMetrics(m.Data(), &wr); err != nil {
		e.deadLetter(ctx, agency, m, "undecodable metrics batch: "+err.Error(), logger)
		return
	}
	n := 0
	for _, ts := range wr.Timeseries {
		n += len(ts.Samples) + len(ts.Histograms)
	}
	wr.Metadata = nil
	raw, err := wr.Marshal()
	if err != nil {
		e.deadLetter(ctx, agency, m, "unencodable: "+err.Error(), logger)
		return
	}
	body := snappy.Encode(nil, raw)
	md, _ := m.Metadata()
	if md != nil {
		e.backlog.WithLabelValues(agency).Set(float64(md.NumPending + 1))
	}
	defer func() {
		if md != nil {
			e.backlog.WithLabelValues(agency).Set(float64(md.NumPending))
			e.lag.WithLabelValues(agency).Set(0)
		}
	}()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if md != nil {
			e.lag.WithLabelValues(agency).Set(time.Since(md.Timestamp).Seconds())
		}
		status, msg, err := e.post(ctx, agency, body)
		switch {
		case err == nil && status/100 == 2:
			_ = m.Ack()
			e.sent.WithLabelValues(agency).Add(float64(n))
			return
		case err == nil && status/100 == 4 && status != http.StatusTooManyRequests:
			e.failed.WithLabelValues(agency).Inc()
			e.deadLetter(ctx, agency, m, fmt.Sprintf("the engine refused the batch: %d %s", status, msg), logger)
			return
		}
		e.failed.WithLabelValues(agency).Inc()
		if status != http.StatusTooManyRequests {
			e.next(agency, logger)
		}
		if attempt == 1 || attempt%20 == 0 {
			logger.Warn("export to the engine failed; retrying in order", "attempt", attempt, "status", status, "err", err, "msg", msg)
		}
		_ = m.InProgress()
		select {
		case <-ctx.Done():
			_ = m.Nak()
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// endpoints are the engine's write endpoints, the one in use first.
func (e *Exporter) endpoints() int { return 1 + len(e.o.Remote.Fallbacks) }

// next moves to the following endpoint after a failure (every agency's
// export, as the failure is the endpoint's).
func (e *Exporter) next(agency string, logger *slog.Logger) {
	n := int32(e.endpoints())
	if n == 1 {
		return
	}
	cur := e.endpoint.Load()
	if e.endpoint.CompareAndSwap(cur, (cur+1)%n) {
		logger.Warn("export endpoint failed; moving to the next", "endpoint", e.url(int(cur)), "next", e.url(int((cur+1)%n)))
	}
}

func (e *Exporter) url(i int) string {
	if i == 0 {
		return e.o.Remote.URL
	}
	return e.o.Remote.Fallbacks[i-1]
}

func (e *Exporter) post(ctx context.Context, agency string, body []byte) (int, string, error) {
	rc := *e.o.Remote
	rc.URL = e.url(int(e.endpoint.Load()))
	u, headers, _, err := rc.clientFor(agency)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func (e *Exporter) deadLetter(ctx context.Context, agency string, m jetstream.Msg, reason string, logger *slog.Logger) {
	logger.Error("batch not exported; moved to the dead letters", "reason", reason)
	if err := e.o.Bus.MoveToDeadLetter(ctx, agency, bus.StageExport, reason, m); err != nil {
		logger.Error("dead letter not stored", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	_ = m.Term()
}
