package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// Defaults of the push receivers.
const (
	DefaultMaxBodyBytes   = 32 << 20
	DefaultVerdictTimeout = 10 * time.Second
	// MaxSampleAge and MaxSampleAhead bound sample timestamps: older
	// samples could no longer be stored, newer ones are clock errors.
	MaxSampleAge   = time.Hour
	MaxSampleAhead = 10 * time.Minute
	// publishTimeout bounds the wait for JetStream to store a batch; past
	// it the sender gets 503 and retries.
	publishTimeout = 5 * time.Second
)

// PushOptions configure the push receivers.
type PushOptions struct {
	Bus        *bus.Bus
	Catalogue  *catalogue.Holder
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	// Admit, if set, is asked before publishing whether the agency's rate
	// limit has room (the router's, when it runs in this process), so that a
	// flood is shed before it reaches the bus.
	Admit func(a *catalogue.Agency, samples int) (bool, time.Duration)
	// MaxBodyBytes bounds a request body, compressed and decompressed.
	MaxBodyBytes int64
	// VerdictTimeout is how long a receiver waits for the router's verdict
	// after the batch is durable. Past it the sender gets 2xx: the batch is
	// stored and will be routed, its limits enforced then.
	VerdictTimeout time.Duration
	Now            func() time.Time
}

// Push receives pushed telemetry: Prometheus remote_write and OTLP/HTTP.
type Push struct {
	opts    PushOptions
	logger  *slog.Logger
	tracer  trace.Tracer
	metrics *pushMetrics

	inbox string
	sub   *nats.Subscription
	seq   atomic.Uint64
	mu    sync.Mutex
	wait  map[string]chan bus.Verdict
	// backoff holds, per agency, until when its last 429 asked senders to
	// wait (a time.Time): pushes before then are refused unread.
	backoff sync.Map
}

// NewPush returns the push receivers; Close releases their subscription.
func NewPush(o PushOptions) (*Push, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.VerdictTimeout == 0 {
		o.VerdictTimeout = DefaultVerdictTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Push{
		opts:    o,
		logger:  o.Logger,
		tracer:  o.Tracer.Tracer("github.com/samdrift/samdrift/collector"),
		metrics: newPushMetrics(o.Registerer),
		inbox:   bus.VerdictPrefix + nuid.Next(),
		wait:    map[string]chan bus.Verdict{},
	}
	sub, err := o.Bus.NC.Subscribe(p.inbox+".*", p.onVerdict)
	if err != nil {
		return nil, fmt.Errorf("subscribe verdicts: %w", err)
	}
	p.sub = sub
	return p, nil
}

// Close stops receiving verdicts.
func (p *Push) Close() { _ = p.sub.Unsubscribe() }

func (p *Push) onVerdict(m *nats.Msg) {
	v, err := bus.DecodeVerdict(m.Data)
	if err != nil {
		return
	}
	p.mu.Lock()
	ch := p.wait[m.Subject]
	delete(p.wait, m.Subject)
	p.mu.Unlock()
	if ch != nil {
		ch <- v
	}
}

// httpError is a response for the sender.
type httpError struct {
	status     int
	msg        string
	retryAfter time.Duration
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *httpError) {
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		secs := int(math.Ceil(e.retryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	http.Error(w, e.msg, e.status)
}

// agencyOf returns the agency a push credential belongs to.
func (p *Push) agencyOf(r *http.Request) (*catalogue.Agency, catalogue.Identity, *httpError) {
	id, ok := catalogue.FromContext(r.Context())
	if !ok {
		return nil, id, errorf(http.StatusUnauthorized, "a valid bearer token is required")
	}
	if id.Role != catalogue.RoleAgency || id.ReadOnly {
		return nil, id, errorf(http.StatusForbidden, "pushing data needs an agency credential; %q is a %s credential", id.Credential, readOnlyRole(id))
	}
	a := p.opts.Catalogue.Get().Agency(id.Agency)
	if a == nil {
		return nil, id, errorf(http.StatusForbidden, "agency %q is not in the catalogue", id.Agency)
	}
	if !a.Phase.AcceptsData() {
		return nil, id, errorf(http.StatusForbidden, "agency %q is in phase plan and accepts no data yet", a.ID)
	}
	// An agency that was told to wait (429, Retry-After) and pushes again
	// before then, or whose token bucket is empty, is shed before its body
	// is read and decoded: overload from one agency costs the others as
	// little CPU as possible.
	after := time.Duration(0)
	if until, ok := p.backoff.Load(a.ID); ok {
		after = time.Until(until.(time.Time))
	}
	if after <= 0 && p.opts.Admit != nil {
		if ok, d := p.opts.Admit(a, 1); !ok {
			after = max(d, time.Millisecond)
		}
	}
	if after > 0 {
		p.metrics.shedEarly.WithLabelValues(a.ID).Inc()
		return nil, id, &httpError{status: http.StatusTooManyRequests, retryAfter: after,
			msg: fmt.Sprintf("agency %q is over its ingestion_rate of %g samples/s: retry later", a.ID, a.EffectiveLimits().IngestionRate)}
	}
	return a, id, nil
}

// readBodyInto reads at most MaxBodyBytes of the request body into buf (a
// reused buffer; the bytes returned are buf's).
func (p *Push) readBodyInto(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) ([]byte, *httpError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed, use POST", r.Method)
	}
	buf.Reset()
	if r.ContentLength > 0 && r.ContentLength <= p.opts.MaxBodyBytes {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, p.opts.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "request body exceeds the limit of %d bytes", p.opts.MaxBodyBytes)
		}
		return nil, errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	return buf.Bytes(), nil
}

// readBody reads at most MaxBodyBytes of the request body into a new buffer.
func (p *Push) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *httpError) {
	var buf bytes.Buffer
	return p.readBodyInto(w, r, &buf)
}

// ingest checks a decoded batch, publishes it durably and waits for the
// router's verdict. It returns the number of samples the router accepted.
func (p *Push) ingest(ctx context.Context, a *catalogue.Agency, cred, protocol string, wr *prompb.WriteRequest) (int, *httpError) {
	return p.ingestRaw(ctx, a, cred, protocol, wr, nil)
}

// ingestRaw is ingest with the batch already in the bus's encoding (a
// remote write 1.0 body), published as it is.
func (p *Push) ingestRaw(ctx context.Context, a *catalogue.Agency, cred, protocol string, wr *prompb.WriteRequest, encoded []byte) (int, *httpError) {
	ctx, span := p.tracer.Start(ctx, "collector.push",
		trace.WithAttributes(attribute.String("agency", a.ID), attribute.String("protocol", protocol)))
	defer span.End()
	fail := func(e *httpError) (int, *httpError) {
		p.metrics.requests.WithLabelValues(protocol, strconv.Itoa(e.status)).Inc()
		span.SetStatus(codes.Error, e.msg)
		return 0, e
	}
	lim := a.EffectiveLimits()
	n := 0
	now := p.opts.Now()
	oldest, newest := now.Add(-MaxSampleAge).UnixMilli(), now.Add(MaxSampleAhead).UnixMilli()
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		n += len(ts.Samples) + len(ts.Histograms)
		prev := int64(math.MinInt64)
		for _, s := range ts.Samples {
			if e := checkTimestamp(s.Timestamp, prev, oldest, newest, ts); e != nil {
				return fail(e)
			}
			prev = s.Timestamp
		}
		prev = math.MinInt64
		for _, h := range ts.Histograms {
			if e := checkTimestamp(h.Timestamp, prev, oldest, newest, ts); e != nil {
				return fail(e)
			}
			prev = h.Timestamp
		}
	}
	span.SetAttributes(attribute.Int("samples", n))
	if n == 0 {
		p.metrics.requests.WithLabelValues(protocol, "200").Inc()
		return 0, nil
	}
	if n > lim.MaxSamplesPerRequest {
		return fail(errorf(http.StatusBadRequest, "request has %d samples, more than max_samples_per_request (%d)", n, lim.MaxSamplesPerRequest))
	}
	if n > lim.IngestionBurstSize {
		return fail(errorf(http.StatusBadRequest, "request has %d samples, more than ingestion_burst_size (%d) allows at once", n, lim.IngestionBurstSize))
	}
	if p.opts.Admit != nil {
		if ok, after := p.opts.Admit(a, n); !ok {
			p.backoff.Store(a.ID, time.Now().Add(after))
			p.metrics.shed.WithLabelValues(a.ID).Add(float64(n))
			return fail(&httpError{status: http.StatusTooManyRequests, retryAfter: after,
				msg: fmt.Sprintf("agency %q is over its ingestion_rate of %g samples/s: retry later", a.ID, lim.IngestionRate)})
		}
	}
	data := encoded
	if data == nil {
		var err error
		if data, err = bus.EncodeMetrics(wr); err != nil {
			return fail(errorf(http.StatusInternalServerError, "encode batch: %v", err))
		}
	}
	reply := p.inbox + "." + strconv.FormatUint(p.seq.Add(1), 36)
	ch := make(chan bus.Verdict, 1)
	p.mu.Lock()
	p.wait[reply] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.wait, reply)
		p.mu.Unlock()
	}()
	msg := &nats.Msg{Subject: bus.IngestSubject(bus.KindMetrics, bus.SourcePush, cred), Data: data, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderVerdict, reply)
	bus.InjectTrace(ctx, msg)
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	_, err := p.opts.Bus.JS.PublishMsg(pctx, msg)
	cancel()
	if err != nil {
		p.logger.Warn("push not stored: bus unavailable", "agency", a.ID, "err", err)
		return fail(&httpError{status: http.StatusServiceUnavailable, retryAfter: time.Second, msg: "samdrift cannot store the batch right now (message bus unavailable); retry"})
	}
	// Durable from here on.
	t := time.NewTimer(p.opts.VerdictTimeout)
	defer t.Stop()
	select {
	case v := <-ch:
		switch v.Status {
		case http.StatusOK:
			p.metrics.requests.WithLabelValues(protocol, "200").Inc()
			return v.Accepted, nil
		case http.StatusTooManyRequests:
			p.backoff.Store(a.ID, time.Now().Add(v.RetryAfter))
			return fail(&httpError{status: v.Status, msg: v.Message, retryAfter: v.RetryAfter})
		default:
			return fail(&httpError{status: v.Status, msg: v.Message})
		}
	case <-t.C:
		p.metrics.verdictTimeouts.Inc()
		p.metrics.requests.WithLabelValues(protocol, "200").Inc()
		return n, nil
	case <-ctx.Done():
		return fail(errorf(http.StatusServiceUnavailable, "request cancelled"))
	}
}

func checkTimestamp(t, prev, oldest, newest int64, ts *prompb.TimeSeries) *httpError {
	switch {
	case t < oldest:
		return errorf(http.StatusBadRequest, "sample for series %s is too old: timestamp %s is more than %s ago", seriesString(ts), time.UnixMilli(t).UTC().Format(time.RFC3339), MaxSampleAge)
	case t > newest:
		return errorf(http.StatusBadRequest, "sample for series %s is too far in the future: timestamp %s", seriesString(ts), time.UnixMilli(t).UTC().Format(time.RFC3339))
	case t < prev:
		return errorf(http.StatusBadRequest, "samples for series %s are out of order: %d after %d", seriesString(ts), t, prev)
	}
	return nil
}

func seriesString(ts *prompb.TimeSeries) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ts.Labels {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", l.Name, l.Value)
		if b.Len() > 200 {
			b.WriteString(", …")
			break
		}
	}
	b.WriteByte('}')
	return b.String()
}

type pushMetrics struct {
	requests        *prometheus.CounterVec
	shed            *prometheus.CounterVec
	verdictTimeouts prometheus.Counter
	shedEarly       *prometheus.CounterVec
}

func newPushMetrics(reg prometheus.Registerer) *pushMetrics {
	m := &pushMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_collector_push_requests_total",
			Help: "Push requests answered, by protocol and HTTP status.",
		}, []string{"protocol", "code"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_collector_push_shed_samples_total",
			Help: "Pushed samples refused with 429 before reaching the bus, because the agency was over its rate limit.",
		}, []string{"agency"}),
		verdictTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samdrift_collector_push_verdict_timeouts_total",
			Help: "Durable pushes answered 2xx without the router's verdict (it was slow or down).",
		}),
		shedEarly: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_collector_push_shed_unread_total",
			Help: "Pushes refused with 429 before their body was read: the agency pushed again within its last Retry-After, or its token bucket was empty.",
		}, []string{"agency"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.shed, m.verdictTimeouts, m.shedEarly)
	}
	return m
}

func readOnlyRole(id catalogue.Identity) string {
	if id.ReadOnly {
		return "read-only " + string(id.Role)
	}
	return string(id.Role)
}
