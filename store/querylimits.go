package store

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/tenancy"
)

// queueTimeout bounds how long a query waits for one of its agency's slots.
const queueTimeout = 30 * time.Second

// QueryLimits keeps each caller's queries within its agency's limits, so
// that one agency's heavy queries cannot take another's latency or the
// process's memory: at most max_concurrent_queries run at once and
// max_outstanding_requests_per_tenant wait (more get 429); a query holds
// at most max_samples_per_query samples in memory (422 past it) and fetches
// at most max_fetched_series_per_query series (422). The provider's own
// callers (ops, admin) are held to the catalogue's defaults, per credential.
type QueryLimits struct {
	limits func(tenancy.Identity) catalogue.Limits
	opts   promql.EngineOpts
	// base answers queries without a caller (rules, reports: the
	// provider's own figures).
	base     *promql.Engine
	rejected *prometheus.CounterVec

	mu      sync.Mutex
	engines map[int]*promql.Engine // by max samples
	queues  map[string]*tenantQueue
}

type tenantQueue struct {
	slots   chan struct{}
	waiting int
}

// NewQueryLimits returns the limits; limits maps a caller to its agency's
// (or the defaults').
func NewQueryLimits(base *promql.Engine, opts promql.EngineOpts, limits func(tenancy.Identity) catalogue.Limits, reg prometheus.Registerer) *QueryLimits {
	opts.Reg = nil // the base engine's metrics stand for all
	l := &QueryLimits{limits: limits, opts: opts, base: base, engines: map[int]*promql.Engine{}, queues: map[string]*tenantQueue{},
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_query_rejected_total",
			Help: "Queries refused for a caller's limits, by agency (or provider credential) and limit.",
		}, []string{"tenant", "limit"})}
	if reg != nil {
		reg.MustRegister(l.rejected)
	}
	return l
}

func tenantKey(id tenancy.Identity) string {
	if id.Role == tenancy.RoleAgency {
		return id.Agency
	}
	return "_" + string(id.Role) + ":" + id.Credential
}

type limitsKey struct{}

// Middleware admits a query API request within its caller's concurrency
// limit, or answers 429 (too many waiting) or 503 (waited too long).
func (l *QueryLimits) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := tenancy.FromContext(r.Context())
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		lim := l.limits(id)
		key := tenantKey(id)
		if err := r.ParseForm(); err == nil {
			n := len(r.Form.Get("query"))
			for _, m := range r.Form["match[]"] {
				n += len(m)
			}
			if n > lim.MaxQueryExpressionSizeBytes {
				l.rejected.WithLabelValues(key, "max_query_expression_size_bytes").Inc()
				httpapi.Errorf(w, http.StatusUnprocessableEntity, "the query is %d bytes, more than max_query_expression_size_bytes (%d)", n, lim.MaxQueryExpressionSizeBytes)
				return
			}
		}
		release, err := l.acquire(r.Context(), key, lim)
		if err != nil {
			l.rejected.WithLabelValues(key, err.limit).Inc()
			httpapi.RetryLater(w, err.status, time.Second, err.msg)
			return
		}
		defer release()
		ctx := context.WithValue(r.Context(), limitsKey{}, lim)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type admitError struct {
	status     int
	limit, msg string
}

func (l *QueryLimits) acquire(ctx context.Context, key string, lim catalogue.Limits) (func(), *admitError) {
	l.mu.Lock()
	q := l.queues[key]
	if q == nil || cap(q.slots) != lim.MaxConcurrentQueries {
		q = &tenantQueue{slots: make(chan struct{}, lim.MaxConcurrentQueries)}
		l.queues[key] = q
	}
	select {
	case q.slots <- struct{}{}:
		l.mu.Unlock()
		return func() { <-q.slots }, nil
	default:
	}
	if q.waiting >= lim.MaxOutstandingRequestsPerTenant {
		l.mu.Unlock()
		return nil, &admitError{http.StatusTooManyRequests, "max_outstanding_requests_per_tenant",
			fmt.Sprintf("too many outstanding queries: %d running (max_concurrent_queries) and %d waiting (max_outstanding_requests_per_tenant); retry later", lim.MaxConcurrentQueries, lim.MaxOutstandingRequestsPerTenant)}
	}
	q.waiting++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		q.waiting--
		l.mu.Unlock()
	}()
	t := time.NewTimer(queueTimeout)
	defer t.Stop()
	select {
	case q.slots <- struct{}{}:
		return func() { <-q.slots }, nil
	case <-t.C:
		return nil, &admitError{http.StatusServiceUnavailable, "queue_timeout",
			fmt.Sprintf("the query waited %s for one of max_concurrent_queries (%d) slots; retry later", queueTimeout, lim.MaxConcurrentQueries)}
	case <-ctx.Done():
		return nil, &admitError{http.StatusServiceUnavailable, "canceled", "request cancelled"}
	}
}

// Engine returns the query engine that holds each query to its caller's
// max_samples_per_query.
func (l *QueryLimits) Engine() promql.QueryEngine { return limitedEngine{l} }

func (l *QueryLimits) engineFor(ctx context.Context) *promql.Engine {
	lim, ok := ctx.Value(limitsKey{}).(catalogue.Limits)
	if !ok {
		return l.base
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.engines[lim.MaxSamplesPerQuery]
	if e == nil {
		o := l.opts
		o.MaxSamples = lim.MaxSamplesPerQuery
		e = promql.NewEngine(o)
		l.engines[lim.MaxSamplesPerQuery] = e
	}
	return e
}

type limitedEngine struct{ l *QueryLimits }

func (e limitedEngine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	return e.l.engineFor(ctx).NewInstantQuery(ctx, limitedQueryable{q, ctx}, opts, qs, ts)
}

func (e limitedEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	return e.l.engineFor(ctx).NewRangeQuery(ctx, limitedQueryable{q, ctx}, opts, qs, start, end, interval)
}

// limitedQueryable counts the series a query fetches against its caller's
// max_fetched_series_per_query.
type limitedQueryable struct {
	storage.Queryable
	ctx context.Context
}

func (q limitedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	lim, ok := q.ctx.Value(limitsKey{}).(catalogue.Limits)
	if !ok || lim.MaxFetchedSeriesPerQuery <= 0 {
		return inner, nil
	}
	return &countingQuerier{Querier: inner, max: lim.MaxFetchedSeriesPerQuery}, nil
}

type countingQuerier struct {
	storage.Querier
	max int
	mu  sync.Mutex
	n   int
}

func (q *countingQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return &countingSet{SeriesSet: q.Querier.Select(ctx, sortSeries, hints, ms...), q: q}
}

type countingSet struct {
	storage.SeriesSet
	q   *countingQuerier
	err error
}

func (s *countingSet) Next() bool {
	if s.err != nil || !s.SeriesSet.Next() {
		return false
	}
	s.q.mu.Lock()
	s.q.n++
	over := s.q.n > s.q.max
	s.q.mu.Unlock()
	if over {
		s.err = fmt.Errorf("the query fetched more than max_fetched_series_per_query (%d) series: narrow its selectors", s.q.max)
		return false
	}
	return true
}

func (s *countingSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.SeriesSet.Err()
}

func (s *countingSet) Warnings() annotations.Annotations { return s.SeriesSet.Warnings() }
