package store

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// TestQueryLimits: one agency's expensive queries are held to its limits —
// samples in memory, series fetched, queries at once and waiting — while
// another agency's queries are answered at once.
func TestQueryLimits(t *testing.T) {
	cat, err := catalogue.Parse([]byte(fmt.Sprintf(`provider: {name: P}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    limits: {max_concurrent_queries: 1, max_outstanding_requests_per_tenant: 1, max_samples_per_query: 1000, max_fetched_series_per_query: 50,
             max_query_expression_size_bytes: 4096}
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
`, catalogue.HashToken("alpha-token"), catalogue.HashToken("beta-token"))), "c.yaml")
	require.NoError(t, err)
	s, err := New(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Apply(cat))
	now := time.Now().Truncate(time.Second)
	for _, id := range []string{"alpha", "beta"} {
		app := s.DB(id).Appender(context.Background())
		for i := range 100 {
			for j := range 10 {
				_, err := app.Append(0, labels.FromStrings("__name__", "m", "agency", id, "i", fmt.Sprint(i)), now.Add(time.Duration(j-9)*15*time.Second).UnixMilli(), 1)
				require.NoError(t, err)
			}
		}
		require.NoError(t, app.Commit())
	}
	h := catalogue.NewHolder(cat)
	g := tenancy.NewGuard(tenancy.GuardOptions{Credentials: h.Credentials})
	engine := NewEngine(nil, nil)
	limits := func(id tenancy.Identity) catalogue.Limits {
		if a := h.Get().Agency(id.Agency); a != nil {
			return a.EffectiveLimits()
		}
		return h.Get().DefaultLimits()
	}
	ql := NewQueryLimits(engine, EngineOpts(nil, nil), limits, nil)
	// A gate that holds alpha's queries in flight, to fill its slots.
	gate := make(chan struct{})
	api := s.APIHandler(APIOptions{Engine: engine, Guard: g, Limits: ql})
	srv := httptest.NewServer(g.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hold") != "" {
			ql.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-gate })).ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})))
	t.Cleanup(srv.Close)

	q := func(token, expr string) (int, string) {
		t.Helper()
		return get(t, srv, token, "/query", url.Values{"query": {expr}, "time": {fmt.Sprint(now.Unix())}})
	}
	code, body := q("alpha-token", `sum(m{i=~"1.*"})`)
	require.Equal(t, http.StatusOK, code, body)
	// 11 series × a 1h range of a 1s subquery: far over 1,000 samples.
	code, body = q("alpha-token", `max_over_time(m{i=~"1.*"}[1h:1s])`)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "query processing would load too many samples into memory")
	code, body = q("beta-token", `max_over_time(m{i=~"1.*"}[1h:1s])`)
	require.Equal(t, http.StatusOK, code, "beta's own limits (the defaults) allow it: %s", body)
	// 100 series fetched, more than alpha's 50.
	code, body = q("alpha-token", `count(m)`)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "max_fetched_series_per_query (50)")
	code, _ = q("alpha-token", `count(m{i=~"1.*"})`)
	require.Equal(t, http.StatusOK, code, "a narrower selector passes")
	long := `m{i="1"}` + strings.Repeat(` or m{i="1"}`, 500)
	code, body = q("alpha-token", long)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "max_query_expression_size_bytes (4096)")
	code, _ = q("beta-token", long)
	require.Equal(t, http.StatusOK, code, "beta's limit is the default")

	// One of alpha's queries runs, one waits; the third is refused at once.
	var wg sync.WaitGroup
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release) // the held requests end before the server closes
	hold := func() {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+APIPrefix+"/query?hold=1", nil)
		req.Header.Set("Authorization", "Bearer alpha-token")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	state := func() (running, waiting int) {
		ql.mu.Lock()
		defer ql.mu.Unlock()
		if q := ql.queues["alpha"]; q != nil {
			return len(q.slots), q.waiting
		}
		return 0, 0
	}
	wg.Go(hold)
	require.EventuallyWithT(t, func(c *assert.CollectT) { r, _ := state(); assert.Equal(c, 1, r) }, 5*time.Second, 10*time.Millisecond)
	wg.Go(hold)
	require.EventuallyWithT(t, func(c *assert.CollectT) { _, w := state(); assert.Equal(c, 1, w) }, 5*time.Second, 10*time.Millisecond)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+APIPrefix+"/query?query=1", nil)
	req.Header.Set("Authorization", "Bearer alpha-token")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	code, body = q("beta-token", `sum(m)`)
	require.Equal(t, http.StatusOK, code, "beta is answered while alpha's slots are full: %s", body)
	release()
	wg.Wait()
	code, _ = q("alpha-token", `sum(m{i=~"1.*"})`)
	require.Equal(t, http.StatusOK, code, "alpha's slots are free again")
}
