package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards/console"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/tenancy"
)

// FuzzConsoleInput: whatever alpha types into the console's forms and
// parameters (sign-in token, agency in the path, report month, query
// string), no page fails with a 5xx or shows anything of beta's.
func FuzzConsoleInput(f *testing.F) {
	c, err := catalogue.Parse([]byte(`provider: {name: P, timezone: Europe/Stockholm}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: `+catalogue.HashToken("alpha-token")+`}]
    services: [{id: web, name: Alpha Web, tier: high, sla: {availability: 99.5}}]
  - id: beta
    name: Betasecret Agency
    phase: run
    credentials: [{name: beta-cred, token_sha256: `+catalogue.HashToken("beta-token")+`}]
    services: [{id: betasecret-svc, name: Betasecret Web, tier: high, sla: {availability: 99.9}}]
`), "c.yaml")
	require.NoError(f, err)
	st, err := store.New(store.Options{Dir: filepath.Join(f.TempDir(), "tsdb")})
	require.NoError(f, err)
	f.Cleanup(func() { st.Close() })
	require.NoError(f, st.Apply(c))
	h := console.New(console.Options{Catalogue: catalogue.NewHolder(c), Sessions: tenancy.NewSessions(&tenancy.MemorySessionStore{}, 0), Engine: store.NewEngine(nil, nil), Queryable: st.Queryable(), ReportLinks: true}).Handler()

	serve := func(req *http.Request) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}
	f.Add("alpha-token", "alpha", "2026-10", "x=1")
	f.Add("beta-token", "beta", "2026-13", "agency=beta")
	f.Add("", "../beta", "' OR 1=1", "%zz")
	f.Add("alpha-token\x00", "alpha/report", "9999-99", "month=2026-10&agency=beta")
	f.Fuzz(func(t *testing.T, token, agency, month, rawQuery string) {
		if strings.Contains(token, "beta-token") {
			return // beta's own credential may see beta
		}
		var reqs []*http.Request
		login := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
		login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		reqs = append(reqs, login)
		for _, p := range []string{
			"/?" + url.QueryEscape(rawQuery),
			"/agency/" + url.PathEscape(agency),
			"/agency/" + url.PathEscape(agency) + "/report?month=" + url.QueryEscape(month),
			"/agency/alpha/report?month=" + url.QueryEscape(month) + "&" + url.QueryEscape(rawQuery),
		} {
			for _, tok := range []string{"alpha-token", token} {
				r := httptest.NewRequest(http.MethodGet, p, nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				reqs = append(reqs, r)
			}
		}
		for _, r := range reqs {
			code, body := serve(r)
			require.Less(t, code, 500, "%s %s: %s", r.Method, r.URL, body)
			if !strings.Contains(strings.ToLower(token+agency+month+rawQuery), "beta") {
				require.NotContains(t, strings.ToLower(body), "betasecret", "%s %s showed beta's data", r.Method, r.URL)
			}
		}
	})
}
