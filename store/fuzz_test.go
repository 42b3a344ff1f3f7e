package store

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// FuzzScopedQuery: whatever PromQL or selector alpha sends to the scoped
// query API, no answer carries beta's data, and the server never fails
// with a 5xx other than a timeout.
func FuzzScopedQuery(f *testing.F) {
	c, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n  - {id: beta, name: B, phase: run}\n"), "c.yaml")
	require.NoError(f, err)
	st, err := New(Options{Dir: filepath.Join(f.TempDir(), "tsdb")})
	require.NoError(f, err)
	f.Cleanup(func() { st.Close() })
	require.NoError(f, st.Apply(c))
	now := time.Now()
	for _, a := range []string{"alpha", "beta"} {
		app := st.DB(a).Appender(context.Background())
		for i := range 10 {
			for _, name := range []string{a + "_metric", "shared_metric"} {
				ls := labels.FromStrings("__name__", name, "agency", a, "secret", a+"secret", "instance", "i1")
				_, err := app.Append(0, ls, now.Add(time.Duration(i-10)*time.Minute).UnixMilli(), float64(i))
				require.NoError(f, err)
			}
		}
		require.NoError(f, app.Commit())
	}
	h := st.APIHandler(APIOptions{Engine: NewEngine(nil, nil)})
	alpha := tenancy.Identity{Role: tenancy.RoleAgency, Agency: "alpha", Credential: "alpha"}
	ask := func(t *testing.T, path string, v url.Values) (int, string) {
		req := httptest.NewRequest(http.MethodPost, APIPrefix+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req = req.WithContext(tenancy.NewContext(req.Context(), alpha))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}
	for _, q := range []string{`{agency="beta"}`, `{__name__=~".+"}`, `shared_metric`, `sum by (agency, secret) (shared_metric)`,
		`label_replace(shared_metric, "a", "$1", "agency", "(.*)")`, `{secret=~"beta.*"}`, `absent(x{agency="beta"})`, `count_values("agency", shared_metric)`} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, c := range []struct {
			path string
			v    url.Values
		}{
			{"/query", url.Values{"query": {q}, "time": {now.Format(time.RFC3339)}}},
			{"/query_range", url.Values{"query": {q}, "start": {now.Add(-time.Hour).Format(time.RFC3339)}, "end": {now.Format(time.RFC3339)}, "step": {"60"}}},
			{"/series", url.Values{"match[]": {q}}},
			{"/label/secret/values", url.Values{"match[]": {q}}},
		} {
			code, body := ask(t, c.path, c.v)
			if code >= 500 {
				require.Equal(t, http.StatusServiceUnavailable, code, "%s %q: %s", c.path, q, body)
			}
			// The query is echoed in errors, and label_replace/label_join
			// can write any string; beta's data is never in the answer.
			if !strings.Contains(q, "beta") && !strings.Contains(q, "label_") {
				require.NotContains(t, body, "betasecret", "%s %q leaked: %s", c.path, q, body)
				require.NotContains(t, body, "beta_metric", "%s %q leaked: %s", c.path, q, body)
			}
		}
	})
}
