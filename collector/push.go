package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
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
	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/router"
	"github.com/samdrift/samdrift/tenancy"
)

// Defaults of the push receivers.
const (
	DefaultMaxBodyBytes   = 32 << 20
	DefaultVerdictTimeout = 10 * time.Second
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
	// Router, if set, routes pushes in this process: a batch is labelled,
	// limited and stored on its agency's subject before its sender's 2xx
	// (one bus hop). Without it, batches go to INGEST for the routers of
	// other processes, and the sender waits for their verdict.
	Router *router.Router
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
	sub   bus.Subscription
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
	sub, err := o.Bus.Subscribe(p.inbox+".*", p.onVerdict)
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
type httpError = httpapi.Status

func errorf(status int, format string, args ...any) *httpError {
	return httpapi.Statusf(status, format, args...)
}

func writeError(w http.ResponseWriter, e *httpError) { httpapi.WriteStatus(w, e) }

// agencyOf returns the agency a push credential belongs to.
func (p *Push) agencyOf(r *http.Request) (*catalogue.Agency, tenancy.Identity, *httpError) {
	id, ok := tenancy.FromContext(r.Context())
	if !ok {
		return nil, id, errorf(http.StatusUnauthorized, "a valid bearer token is required")
	}
	if id.Role != tenancy.RoleAgency || id.ReadOnly {
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
	if after <= 0 && p.opts.Router != nil {
		if ok, d := p.opts.Router.Admit(a, 1); !ok {
			after = max(d, time.Millisecond)
		}
	}
	if after > 0 {
		p.metrics.shedEarly.WithLabelValues(a.ID).Inc()
		return nil, id, &httpError{Code: http.StatusTooManyRequests, RetryAfter: after,
			Msg: fmt.Sprintf("agency %q is over its ingestion_rate of %g samples/s: retry later", a.ID, a.EffectiveLimits().IngestionRate)}
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

// ingest checks a decoded batch, stores it durably and returns the number
// of samples accepted.
func (p *Push) ingest(ctx context.Context, a *catalogue.Agency, cred, protocol string, wr *prompb.WriteRequest) (int, *httpError) {
	return p.ingestRaw(ctx, a, cred, protocol, wr, nil)
}

// ingestRaw is ingest with the batch already in the bus's encoding (a
// remote write 1.0 body), forwarded as it is where it fits.
//
// The batch is validated here, at the door (router.Validator, strict): a
// sender learns at once, with a 4xx naming the series or limit, what can
// never be stored. What passes is answered 2xx only once it is durable:
// routed in this process (Router), or stored on INGEST and routed by a
// router elsewhere, whose verdict the sender waits for.
func (p *Push) ingestRaw(ctx context.Context, a *catalogue.Agency, cred, protocol string, wr *prompb.WriteRequest, encoded []byte) (int, *httpError) {
	ctx, span := p.tracer.Start(ctx, "collector.push",
		trace.WithAttributes(attribute.String("agency", a.ID), attribute.String("protocol", protocol)))
	defer span.End()
	fail := func(e *httpError) (int, *httpError) {
		p.metrics.requests.WithLabelValues(protocol, strconv.Itoa(e.Code)).Inc()
		span.SetStatus(codes.Error, e.Msg)
		return 0, e
	}
	if herr := router.CheckPush(a, wr, p.opts.Now); herr != nil {
		return fail(herr)
	}
	n := 0
	for i := range wr.Timeseries {
		n += len(wr.Timeseries[i].Samples) + len(wr.Timeseries[i].Histograms)
	}
	span.SetAttributes(attribute.Int("samples", n))
	if n == 0 {
		p.metrics.requests.WithLabelValues(protocol, "200").Inc()
		return 0, nil
	}
	var v bus.Verdict
	if p.opts.Router != nil {
		if ok, after := p.opts.Router.Admit(a, n); !ok {
			p.backoff.Store(a.ID, time.Now().Add(after))
			p.metrics.shed.WithLabelValues(a.ID).Add(float64(n))
			return fail(&httpError{Code: http.StatusTooManyRequests, RetryAfter: after,
				Msg: fmt.Sprintf("agency %q is over its ingestion_rate of %g samples/s: retry later", a.ID, a.EffectiveLimits().IngestionRate)})
		}
		v = p.opts.Router.IngestMetrics(ctx, cred, wr)
	} else {
		var herr *httpError
		if v, herr = p.viaIngest(ctx, a, cred, wr, encoded, n); herr != nil {
			return fail(herr)
		}
	}
	switch v.Status {
	case http.StatusOK:
		p.metrics.requests.WithLabelValues(protocol, "200").Inc()
		return v.Accepted, nil
	case http.StatusTooManyRequests:
		p.backoff.Store(a.ID, time.Now().Add(v.RetryAfter))
		return fail(&httpError{Code: v.Status, Msg: v.Message, RetryAfter: v.RetryAfter})
	default:
		return fail(&httpError{Code: v.Status, Msg: v.Message, RetryAfter: v.RetryAfter})
	}
}

// viaIngest stores a batch on INGEST for the routers of other processes —
// split into parts that fit the bus if need be — and waits for their
// verdicts. Past VerdictTimeout the batch is durable and will be routed, so
// the sender gets 2xx.
func (p *Push) viaIngest(ctx context.Context, a *catalogue.Agency, cred string, wr *prompb.WriteRequest, encoded []byte, n int) (bus.Verdict, *httpError) {
	parts, err := p.ingestParts(wr, encoded)
	if err != nil {
		return bus.Verdict{}, errorf(http.StatusRequestEntityTooLarge, "%v", err)
	}
	return p.awaitVerdicts(ctx, bus.IngestSubject(bus.KindMetrics, bus.SourcePush, cred), parts, "", n)
}

// awaitVerdicts stores parts on an INGEST subject, each asking the router
// for its verdict, and waits for them; past VerdictTimeout the parts are
// durable and will be routed, so the sender gets 2xx. A non-empty msgID
// makes the parts' de-duplication ids.
func (p *Push) awaitVerdicts(ctx context.Context, subject string, parts [][]byte, msgID string, n int) (bus.Verdict, *httpError) {
	type waiting struct {
		reply string
		ch    chan bus.Verdict
	}
	ws := make([]waiting, len(parts))
	msgs := make([]*nats.Msg, len(parts))
	for i, data := range parts {
		ws[i] = waiting{reply: p.inbox + "." + strconv.FormatUint(p.seq.Add(1), 36), ch: make(chan bus.Verdict, 1)}
		p.mu.Lock()
		p.wait[ws[i].reply] = ws[i].ch
		p.mu.Unlock()
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(bus.HeaderVerdict, ws[i].reply)
		bus.InjectTrace(ctx, msg)
		msgs[i] = msg
	}
	var ids []string
	if msgID != "" {
		for i := range parts {
			ids = append(ids, msgID+"-"+strconv.Itoa(i))
		}
	}
	defer func() {
		p.mu.Lock()
		for _, w := range ws {
			delete(p.wait, w.reply)
		}
		p.mu.Unlock()
	}()
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	err := p.opts.Bus.PublishAll(pctx, msgs, ids)
	cancel()
	if err != nil {
		p.logger.Warn("push not stored: bus unavailable", "subject", subject, "err", err)
		return bus.Verdict{}, &httpError{Code: http.StatusServiceUnavailable, RetryAfter: time.Second, Msg: "samdrift cannot store the batch right now (message bus unavailable); retry"}
	}
	// Durable from here on.
	t := time.NewTimer(p.opts.VerdictTimeout)
	defer t.Stop()
	total := bus.Verdict{Status: http.StatusOK}
	for _, w := range ws {
		select {
		case v := <-w.ch:
			total.Accepted += v.Accepted
			if v.Status > total.Status {
				total.Status, total.Message, total.RetryAfter = v.Status, v.Message, v.RetryAfter
			}
		case <-t.C:
			p.metrics.verdictTimeouts.Inc()
			return bus.Verdict{Status: http.StatusOK, Accepted: n}, nil
		case <-ctx.Done():
			return bus.Verdict{}, errorf(http.StatusServiceUnavailable, "request cancelled")
		}
	}
	return total, nil
}

// ingestParts returns the batch in the bus's encoding, split into parts the
// bus takes (the sender's own body when it fits).
func (p *Push) ingestParts(wr *prompb.WriteRequest, encoded []byte) ([][]byte, error) {
	limit := p.opts.Bus.MaxPayload() - 16<<10
	if encoded != nil && len(encoded) <= limit {
		return [][]byte{encoded}, nil
	}
	var out [][]byte
	var split func(ts []prompb.TimeSeries) error
	split = func(ts []prompb.TimeSeries) error {
		data, err := bus.EncodeMetrics(&prompb.WriteRequest{Timeseries: ts})
		if err != nil {
			return err
		}
		if len(data) <= limit {
			out = append(out, data)
			return nil
		}
		if len(ts) == 1 {
			return fmt.Errorf("one series of the request is larger than the bus allows (%d bytes)", limit)
		}
		if err := split(ts[:len(ts)/2]); err != nil {
			return err
		}
		return split(ts[len(ts)/2:])
	}
	return out, split(wr.Timeseries)
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

func readOnlyRole(id tenancy.Identity) string {
	if id.ReadOnly {
		return "read-only " + string(id.Role)
	}
	return string(id.Role)
}
