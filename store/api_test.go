package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

func testCatalogue(t *testing.T) *catalogue.Catalogue {
	t.Helper()
	y := fmt.Sprintf(`provider: {name: P}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high}]
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high}]
`, catalogue.HashToken("noc-token"), catalogue.HashToken("alpha-token"), catalogue.HashToken("beta-token"))
	c, err := catalogue.Parse([]byte(y), "test.yaml")
	require.NoError(t, err)
	return c
}

// newTestAPI returns a query API server over a store holding a series
// secret_metric{agency=<id>,...} per agency.
func newTestAPI(t *testing.T) (*httptest.Server, time.Time) {
	t.Helper()
	cat := testCatalogue(t)
	s, err := New(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Apply(cat))
	now := time.Now().Truncate(time.Second)
	for _, id := range []string{"alpha", "beta"} {
		app := s.DB(id).Appender(context.Background())
		for i := range 10 {
			ts := now.Add(time.Duration(i-9) * 15 * time.Second).UnixMilli()
			_, err := app.Append(0, labels.FromStrings("__name__", "secret_metric", "agency", id, "service", "web", "owner_"+id, "x"), ts, float64(i))
			require.NoError(t, err)
			_, err = app.Append(0, labels.FromStrings("__name__", "up", "agency", id, "service", "web", "job", "web"), ts, 1)
			require.NoError(t, err)
		}
		require.NoError(t, app.Commit())
	}
	h := catalogue.NewHolder(cat)
	g := tenancy.NewGuard(tenancy.GuardOptions{Credentials: h.Credentials})
	srv := httptest.NewServer(g.Authenticate(s.APIHandler(APIOptions{Engine: NewEngine(nil, nil), Guard: g})))
	t.Cleanup(srv.Close)
	return srv, now
}

func get(t *testing.T, srv *httptest.Server, token, path string, params url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+APIPrefix+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestIsolation: with agency alpha's token, every read endpoint returns
// nothing of agency beta, whatever the query asks for.
func TestIsolation(t *testing.T) {
	srv, now := newTestAPI(t)
	ts := fmt.Sprint(now.Unix())
	rng := url.Values{"start": {fmt.Sprint(now.Add(-5 * time.Minute).Unix())}, "end": {ts}, "step": {"15"}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vv := range v {
			out[k] = vv
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	attempts := []struct {
		name   string
		path   string
		params url.Values
	}{
		{"query other agency", "/query", url.Values{"query": {`secret_metric{agency="beta"}`}, "time": {ts}}},
		{"query regex agency", "/query", url.Values{"query": {`secret_metric{agency=~".+"}`}, "time": {ts}}},
		{"query all names", "/query", url.Values{"query": {`{__name__=~".+"}`}, "time": {ts}}},
		{"query aggregation", "/query", url.Values{"query": {`count by (agency) ({__name__=~".+"})`}, "time": {ts}}},
		{"query_range other agency", "/query_range", with(rng, "query", `secret_metric{agency="beta"}`)},
		{"query_range all", "/query_range", with(rng, "query", `{__name__=~".+"}`)},
		{"series all", "/series", url.Values{"match[]": {`{__name__=~".+"}`}}},
		{"series other agency", "/series", url.Values{"match[]": {`{agency="beta"}`}}},
		{"labels", "/labels", url.Values{}},
		{"labels matched", "/labels", url.Values{"match[]": {`{agency="beta"}`}}},
		{"label values agency", "/label/agency/values", url.Values{}},
		{"label values name", "/label/__name__/values", url.Values{"match[]": {`{agency=~"b.*"}`}}},
		{"label values owner", "/label/owner_beta/values", url.Values{}},
		{"exemplars", "/query_exemplars", url.Values{"query": {`secret_metric`}, "start": {"0"}, "end": {ts}}},
	}
	leaks := 0
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			code, body := get(t, srv, "alpha-token", a.path, a.params)
			require.Equal(t, http.StatusOK, code, body)
			require.Contains(t, body, `"status":"success"`)
			if strings.Contains(body, "beta") {
				leaks++
				t.Errorf("agency alpha saw agency beta's data: %s", body)
			}
		})
	}
	t.Logf("isolation: %d attempts, %d leaks", len(attempts), leaks)

	// The same queries do find alpha's own data, so the test can fail.
	_, body := get(t, srv, "alpha-token", "/query", url.Values{"query": {`secret_metric`}, "time": {ts}})
	require.Contains(t, body, `"agency":"alpha"`)
	_, body = get(t, srv, "alpha-token", "/label/agency/values", nil)
	require.JSONEq(t, `{"status":"success","data":["alpha"]}`, body)
	_, body = get(t, srv, "beta-token", "/label/agency/values", nil)
	require.JSONEq(t, `{"status":"success","data":["beta"]}`, body)
}

func TestOpsSeesAll(t *testing.T) {
	srv, now := newTestAPI(t)
	_, body := get(t, srv, "noc-token", "/query", url.Values{"query": {`count by (agency) (secret_metric)`}, "time": {fmt.Sprint(now.Unix())}})
	var resp struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	var got []string
	for _, r := range resp.Data.Result {
		got = append(got, r.Metric["agency"])
	}
	require.ElementsMatch(t, []string{"alpha", "beta"}, got)

	_, body = get(t, srv, "noc-token", "/label/agency/values", nil)
	require.JSONEq(t, `{"status":"success","data":["alpha","beta"]}`, body)
	_, body = get(t, srv, "noc-token", "/series", url.Values{"match[]": {`secret_metric{agency="beta"}`}})
	require.Contains(t, body, "owner_beta")
	require.NotContains(t, body, "owner_alpha")
}

func TestAuthAndHiddenEndpoints(t *testing.T) {
	srv, _ := newTestAPI(t)
	code, _ := get(t, srv, "", "/query", url.Values{"query": {"up"}})
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(t, srv, "wrong-token", "/query", url.Values{"query": {"up"}})
	require.Equal(t, http.StatusUnauthorized, code)
	for _, p := range []string{"/targets", "/status/config", "/status/flags", "/status/tsdb", "/admin/tsdb/snapshot", "/scrape_pools", "/status/runtimeinfo"} {
		code, body := get(t, srv, "noc-token", p, nil)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", p, body)
	}
	code, body := get(t, srv, "alpha-token", "/status/buildinfo", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"version"`)
	code, body = get(t, srv, "alpha-token", "/query", url.Values{"query": {"up{"}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `"errorType":"bad_data"`)
}

// A context without an identity reads nothing, even through the storage
// interface directly: the scoping fails closed.
func TestQueryableFailsClosed(t *testing.T) {
	cat := testCatalogue(t)
	s, err := New(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Apply(cat))
	app := s.DB("alpha").Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "m", "agency", "alpha"), time.Now().UnixMilli(), 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	q, err := s.Queryable().Querier(0, time.Now().Add(time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	require.False(t, ss.Next())
	ctx := tenancy.NewContext(context.Background(), tenancy.Identity{Role: tenancy.RoleAgency, Agency: "alpha"})
	ss = q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	require.True(t, ss.Next())
}
