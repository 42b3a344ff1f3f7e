package store

import (
	"context"
	"sync"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/samdrift/samdrift/tenancy"
)

// Queryable returns storage that answers every call from the agencies the
// caller may read: the identity comes from the call's context (see
// tenancy.NewContext). A context without an identity reads nothing.
//
// An agency's TSDB holds only that agency's series, so a matcher on another
// agency (agency="other", agency=~".+") simply finds nothing: isolation does
// not depend on rewriting queries.
func (s *Store) Queryable() storage.SampleAndChunkQueryable { return scopedQueryable{s} }

// ExemplarQueryable is Queryable for exemplars.
func (s *Store) ExemplarQueryable() storage.ExemplarQueryable { return scopedQueryable{s} }

type scopedQueryable struct{ s *Store }

func (q scopedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &scopedQuerier{s: q.s, mint: mint, maxt: maxt}, nil
}

func (q scopedQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	return &scopedChunkQuerier{s: q.s, mint: mint, maxt: maxt}, nil
}

func (q scopedQueryable) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	var qs []storage.ExemplarQuerier
	for _, id := range q.s.scope(ctx, nil) {
		db := q.s.DB(id)
		if db == nil {
			continue
		}
		eq, err := db.ExemplarQuerier(ctx)
		if err != nil {
			return nil, err
		}
		qs = append(qs, eq)
	}
	return exemplarQueriers(qs), nil
}

type exemplarQueriers []storage.ExemplarQuerier

func (e exemplarQueriers) Select(start, end int64, matchers ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	var out []exemplar.QueryResult
	for _, q := range e {
		r, err := q.Select(start, end, matchers...)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// scope returns the agencies the caller in ctx may read, narrowed by any
// matchers on the agency label.
func (s *Store) scope(ctx context.Context, ms []*labels.Matcher) []string {
	id, ok := tenancy.FromContext(ctx)
	if !ok {
		return nil
	}
	var candidates []string
	switch {
	case id.AllAgencies():
		candidates = s.Agencies()
	case id.Role == tenancy.RoleAgency:
		candidates = []string{id.Agency}
	default:
		return nil
	}
	out := candidates[:0]
	for _, a := range candidates {
		if matchesAgency(a, ms) {
			out = append(out, a)
		}
	}
	return out
}

func matchesAgency(agency string, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if m.Name == "agency" && !m.Matches(agency) {
			return false
		}
	}
	return true
}

// scopedQuerier opens the TSDB queriers of the caller's agencies on first use.
type scopedQuerier struct {
	s          *Store
	mint, maxt int64
	mu         sync.Mutex
	open       map[string]storage.Querier
}

func (q *scopedQuerier) querier(ctx context.Context, ms []*labels.Matcher) (storage.Querier, error) {
	ids := q.s.scope(ctx, ms)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.open == nil {
		q.open = map[string]storage.Querier{}
	}
	qs := make([]storage.Querier, 0, len(ids))
	for _, id := range ids {
		if oq, ok := q.open[id]; ok {
			qs = append(qs, oq)
			continue
		}
		aq := q.s.AgencyQueryable(id)
		if aq == nil {
			continue
		}
		oq, err := aq.Querier(q.mint, q.maxt)
		if err != nil {
			return nil, err
		}
		q.open[id] = oq
		qs = append(qs, oq)
	}
	switch len(qs) {
	case 0:
		return storage.NoopQuerier(), nil
	case 1:
		return qs[0], nil
	}
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}

func (q *scopedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	sq, err := q.querier(ctx, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return sq.Select(ctx, sortSeries, hints, ms...)
}

func (q *scopedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sq, err := q.querier(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	return sq.LabelValues(ctx, name, hints, ms...)
}

func (q *scopedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sq, err := q.querier(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	return sq.LabelNames(ctx, hints, ms...)
}

// Close closes every TSDB querier opened (the merge queriers wrap them and
// are not closed themselves).
func (q *scopedQuerier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var first error
	for _, oq := range q.open {
		if err := oq.Close(); err != nil && first == nil {
			first = err
		}
	}
	q.open = nil
	return first
}

type scopedChunkQuerier struct {
	s          *Store
	mint, maxt int64
	mu         sync.Mutex
	open       map[string]storage.ChunkQuerier
}

func (q *scopedChunkQuerier) querier(ctx context.Context, ms []*labels.Matcher) (storage.ChunkQuerier, error) {
	ids := q.s.scope(ctx, ms)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.open == nil {
		q.open = map[string]storage.ChunkQuerier{}
	}
	qs := make([]storage.ChunkQuerier, 0, len(ids))
	for _, id := range ids {
		if oq, ok := q.open[id]; ok {
			qs = append(qs, oq)
			continue
		}
		aq := q.s.AgencyQueryable(id)
		if aq == nil {
			continue
		}
		oq, err := aq.ChunkQuerier(q.mint, q.maxt)
		if err != nil {
			return nil, err
		}
		q.open[id] = oq
		qs = append(qs, oq)
	}
	switch len(qs) {
	case 0:
		return storage.NoopChunkedQuerier(), nil
	case 1:
		return qs[0], nil
	}
	return storage.NewMergeChunkQuerier(qs, nil, storage.NewCompactingChunkSeriesMerger(storage.ChainedSeriesMerge)), nil
}

func (q *scopedChunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	sq, err := q.querier(ctx, ms)
	if err != nil {
		return storage.ErrChunkSeriesSet(err)
	}
	return sq.Select(ctx, sortSeries, hints, ms...)
}

func (q *scopedChunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sq, err := q.querier(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	return sq.LabelValues(ctx, name, hints, ms...)
}

func (q *scopedChunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sq, err := q.querier(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	return sq.LabelNames(ctx, hints, ms...)
}

func (q *scopedChunkQuerier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var first error
	for _, oq := range q.open {
		if err := oq.Close(); err != nil && first == nil {
			first = err
		}
	}
	q.open = nil
	return first
}
