package store

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOtherAgencies: the selectors of a query API request that name
// another agency are found, whatever the matcher or where it hides.
func TestOtherAgencies(t *testing.T) {
	agencies := []string{"alpha", "beta", "gamma"}
	for _, c := range []struct {
		form url.Values
		want []string
	}{
		{url.Values{"query": {`up`}}, nil},
		{url.Values{"query": {`up{agency="alpha"}`}}, nil},
		{url.Values{"query": {`up{agency="beta"}`}}, []string{"beta"}},
		{url.Values{"query": {`sum(rate(x{agency=~"b.*|g.*"}[5m])) / on() y`}}, []string{"beta", "gamma"}},
		{url.Values{"query": {`{__name__=~".+", agency=~".+"}`}}, []string{"beta", "gamma"}},
		{url.Values{"query": {`up{agency!="alpha"}`}}, nil}, // names nobody in particular; answers only alpha's
		{url.Values{"match[]": {`{agency="gamma"}`, `up`}}, []string{"gamma"}},
		{url.Values{"query": {`up{agency="beta"`}}, nil}, // unparseable: the API refuses it
	} {
		req := httptest.NewRequest("POST", "/prometheus/api/v1/query", strings.NewReader(c.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		require.Equal(t, c.want, OtherAgencies(req, "alpha", agencies), "%v", c.form)
	}
}
