package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/samdrift/samdrift/tenancy"
)

// EngineConfig is a scale-out engine (Thanos Query, Mimir, Prometheus) that
// holds every agency's series, read through its Prometheus query API with
// the agency as tenant. In engine mode a store opens no local TSDB: every
// read — query API, console, SLA figures, reports, rules — goes there.
type EngineConfig struct {
	// URL is the base of the engine's Prometheus API (…/api/v1 is added).
	URL string
	// TenantHeader carries the agency id ("" or "-": none, for engines that
	// take the tenant elsewhere). Every selector also carries the agency's
	// matcher: an engine that ignored the header would still answer each
	// agency only its own series.
	TenantHeader string
	// TenantLabel is the label the engine adds to every series of a tenant
	// (Thanos Receive: tenant_id; default none): removed from every answer,
	// so that the engine's series and this process's own outputs are the
	// same series, and agencies see Samdrift's labels only.
	TenantLabel string
	Headers     map[string]string
	Timeout     time.Duration
	// Client, if set, sends the requests (tests).
	Client *http.Client
}

// engineQueryable reads one agency's series from the engine.
type engineQueryable struct {
	cfg    *EngineConfig
	agency string
	client *http.Client
}

func newEngineQueryable(cfg *EngineConfig, agency string) engineQueryable {
	c := cfg.Client
	if c == nil {
		timeout := cfg.Timeout
		if timeout == 0 {
			timeout = 2 * time.Minute
		}
		c = &http.Client{Timeout: timeout}
	}
	return engineQueryable{cfg: cfg, agency: agency, client: c}
}

func (e engineQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &engineQuerier{e: e, mint: mint, maxt: maxt, agency: labels.MustNewMatcher(labels.MatchEqual, tenancy.Label, e.agency)}, nil
}

func (e engineQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, _ := e.Querier(mint, maxt)
	return engineChunkQuerier{q.(*engineQuerier)}, nil
}

type engineQuerier struct {
	e          engineQueryable
	mint, maxt int64
	agency     *labels.Matcher
}

// selector writes matchers, with the agency's, as a PromQL selector.
func (q *engineQuerier) selector(ms []*labels.Matcher) string {
	parts := make([]string, 0, len(ms)+1)
	for _, m := range ms {
		if m.Name == tenancy.Label && !m.Matches(q.e.agency) {
			return "" // asks for another agency: nothing
		}
		if tl := q.e.cfg.TenantLabel; tl != "" && m.Name == tl {
			// The engine's tenant label is not one of the agency's: it reads
			// as absent, as in the embedded store.
			if !m.Matches("") {
				return ""
			}
			continue
		}
		parts = append(parts, m.String())
	}
	parts = append(parts, q.agency.String())
	return "{" + strings.Join(parts, ",") + "}"
}

// get calls the engine's API and decodes its data.
func (q *engineQuerier) get(ctx context.Context, path string, params url.Values, data any) (annotations.Annotations, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(q.e.cfg.URL, "/")+"/api/v1"+path+"?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if h := q.e.cfg.TenantHeader; h != "" && h != "-" {
		req.Header.Set(h, q.e.agency)
	}
	for k, v := range q.e.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := q.e.client.Do(req)
	if err != nil {
		return nil, engineError(fmt.Errorf("engine: %w", err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, engineError(fmt.Errorf("engine: %w", err))
	}
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Warnings  []string        `json:"warnings"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, engineError(fmt.Errorf("engine answered %s: %.200s", resp.Status, body))
	}
	if env.Status != "success" {
		return nil, engineError(fmt.Errorf("engine: %s: %s", env.ErrorType, env.Error))
	}
	var annos annotations.Annotations
	for _, w := range env.Warnings {
		annos.Add(errors.New("engine: " + w))
	}
	return annos, json.Unmarshal(env.Data, data)
}

// engineError marks a failed engine read as a storage error: the query API
// answers it 500 "internal" (the engine's fault, not the query's), as
// Prometheus does for its own storage, never as an empty result.
func engineError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return promql.ErrStorage{Err: err}
}

func (q *engineQuerier) bounds(hints *storage.SelectHints) (int64, int64) {
	start, end := q.mint, q.maxt
	if hints != nil {
		start, end = max(start, hints.Start), min(end, hints.End)
	}
	return start, end
}

// Select reads raw samples with a range selector over the query's span,
// evaluated at its end: the engine returns every sample in (end-range, end].
func (q *engineQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	sel := q.selector(ms)
	start, end := q.bounds(hints)
	if sel == "" || end < start {
		return storage.EmptySeriesSet()
	}
	params := url.Values{
		"query": {fmt.Sprintf("%s[%dms]", sel, end-start+1)},
		"time":  {formatMillis(end)},
		"dedup": {"true"},
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric     map[string]string `json:"metric"`
			Values     [][2]any          `json:"values"`
			Histograms [][2]any          `json:"histograms"`
		} `json:"result"`
	}
	annos, err := q.get(ctx, "/query", params, &data)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	out := make([]storage.Series, 0, len(data.Result))
	for _, r := range data.Result {
		if r.Metric[tenancy.Label] != q.e.agency {
			continue // defence in depth: never another agency's series
		}
		if tl := q.e.cfg.TenantLabel; tl != "" {
			delete(r.Metric, tl)
		}
		samples := make([]chunks.Sample, 0, len(r.Values))
		for _, v := range r.Values {
			t, f, err := parsePoint(v)
			if err != nil {
				return storage.ErrSeriesSet(err)
			}
			samples = append(samples, fsample{t: t, f: f})
		}
		if len(r.Histograms) > 0 {
			annos.Add(fmt.Errorf("engine: native histogram samples of %s are not read back from the engine", labels.FromMap(r.Metric)))
		}
		if len(samples) > 0 {
			out = append(out, storage.NewListSeries(labels.FromMap(r.Metric), samples))
		}
	}
	if sortSeries {
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	}
	return &listSeriesSet{series: out, annos: annos}
}

func (q *engineQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sel := q.selector(ms)
	if sel == "" || (name == q.e.cfg.TenantLabel && name != "") {
		return nil, nil, nil
	}
	var vals []string
	annos, err := q.get(ctx, "/label/"+url.PathEscape(name)+"/values", q.labelParams(sel, hints), &vals)
	return vals, annos, err
}

func (q *engineQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sel := q.selector(ms)
	if sel == "" {
		return nil, nil, nil
	}
	var names []string
	annos, err := q.get(ctx, "/labels", q.labelParams(sel, hints), &names)
	if tl := q.e.cfg.TenantLabel; tl != "" {
		names = slices.DeleteFunc(names, func(n string) bool { return n == tl })
	}
	return names, annos, err
}

func (q *engineQuerier) labelParams(sel string, hints *storage.LabelHints) url.Values {
	p := url.Values{"match[]": {sel}, "start": {formatMillis(q.mint)}, "end": {formatMillis(q.maxt)}}
	if hints != nil && hints.Limit > 0 {
		p.Set("limit", strconv.Itoa(hints.Limit))
	}
	return p
}

func (q *engineQuerier) Close() error { return nil }

type engineChunkQuerier struct{ q *engineQuerier }

func (c engineChunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(c.q.Select(ctx, sortSeries, hints, ms...))
}

func (c engineChunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return c.q.LabelValues(ctx, name, hints, ms...)
}

func (c engineChunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return c.q.LabelNames(ctx, hints, ms...)
}

func (c engineChunkQuerier) Close() error { return nil }

// formatMillis writes a millisecond timestamp as the API's seconds.
func formatMillis(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}

// parsePoint reads a [seconds, "value"] pair of the API.
func parsePoint(v [2]any) (int64, float64, error) {
	ts, ok := v[0].(float64)
	s, ok2 := v[1].(string)
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("engine: malformed sample %v", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("engine: malformed value %q", s)
	}
	return int64(ts*1000 + 0.5), f, nil
}

// fsample is a float sample read from the engine.
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }

// listSeriesSet iterates series read at once.
type listSeriesSet struct {
	series []storage.Series
	i      int
	annos  annotations.Annotations
}

func (l *listSeriesSet) Next() bool {
	l.i++
	return l.i <= len(l.series)
}

func (l *listSeriesSet) At() storage.Series                { return l.series[l.i-1] }
func (l *listSeriesSet) Err() error                        { return nil }
func (l *listSeriesSet) Warnings() annotations.Annotations { return l.annos }

// engineUsageTTL is how long a count of the engine's series is reused:
// counting every series of every tenant is a heavy query, and metering
// reads usage every 30 s.
const engineUsageTTL = 5 * time.Minute

// engineUsage counts each agency's series in the engine (a series seen in
// the last five minutes), for metering, at most every engineUsageTTL;
// bytes are the engine's to report.
func (s *Store) engineUsage() map[string]float64 {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	if s.usage != nil && time.Since(s.usageAt) < engineUsageTTL {
		return s.usage
	}
	s.usage, s.usageAt = s.countEngineSeries(), time.Now()
	return s.usage
}

func (s *Store) countEngineSeries() map[string]float64 {
	s.mu.RLock()
	qs := make(map[string]engineQueryable, len(s.engine))
	for id, e := range s.engine {
		qs[id] = e
	}
	s.mu.RUnlock()
	out := map[string]float64{}
	for id, e := range qs {
		q := &engineQuerier{e: e, agency: labels.MustNewMatcher(labels.MatchEqual, tenancy.Label, id)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		}
		_, err := q.get(ctx, "/query", url.Values{"query": {fmt.Sprintf("count(%s)", q.selector([]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".+")}))}}, &data)
		cancel()
		if err != nil {
			s.logger.Warn("series count from the engine", "agency", id, "err", err)
			continue
		}
		if len(data.Result) == 1 {
			if _, f, err := parsePoint(data.Result[0].Value); err == nil {
				out[id] = f
			}
		} else {
			out[id] = 0
		}
	}
	return out
}

// outputsQueryable reads the engine and this process's own outputs (the
// rules' last evaluations, not exported yet); a sample in both is merged.
// The engine failing fails the read: figures are never computed from half
// the data.
type outputsQueryable struct {
	engine engineQueryable
	local  storage.SampleAndChunkQueryable
}

func (o outputsQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	eq, err := o.engine.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	lq, err := o.local.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return storage.NewMergeQuerier([]storage.Querier{eq, lq}, nil, storage.ChainedSeriesMerge), nil
}

func (o outputsQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	eq, err := o.engine.ChunkQuerier(mint, maxt)
	if err != nil {
		return nil, err
	}
	lq, err := o.local.ChunkQuerier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return storage.NewMergeChunkQuerier([]storage.ChunkQuerier{eq, lq}, nil, storage.NewCompactingChunkSeriesMerger(storage.ChainedSeriesMerge)), nil
}
