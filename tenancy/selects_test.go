package tenancy

import (
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// TestSelects: the one answer to "does this expression ask for another
// agency", shared by the query API's audit and agency rule files.
func TestSelects(t *testing.T) {
	agencies := []string{"alpha", "beta", "gamma"}
	for _, c := range []struct {
		name     string
		exprs    []string
		named    []string
		wildcard bool
	}{
		{"no agency matcher", []string{`up`}, nil, false},
		{"own agency", []string{`up{agency="alpha"}`}, nil, false},
		{"another agency", []string{`up{agency="beta"}`}, []string{"beta"}, false},
		{"regexp deep in an expression", []string{`sum(rate(x{agency=~"b.*|g.*"}[5m])) / on() y`}, []string{"beta", "gamma"}, false},
		{"every agency is a wildcard", []string{`{__name__=~".+", agency=~".+"}`}, nil, true},
		{"all but own names the others", []string{`up{agency!="alpha"}`}, []string{"beta", "gamma"}, false},
		{"conjunction of matchers", []string{`up{agency=~"a.*|b.*", agency!="alpha"}`}, []string{"beta"}, false},
		{"series selectors (match[])", []string{`{agency="gamma"}`, `up`}, []string{"gamma"}, false},
		{"subquery and offset", []string{`max_over_time(up{agency="gamma"}[1h:1m] offset 1d)`}, []string{"gamma"}, false},
		{"unparseable names none", []string{`up{agency="beta"`}, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sel := Selects("alpha", agencies, c.exprs...)
			require.Equal(t, c.named, sel.Named)
			require.Equal(t, c.wildcard, sel.Wildcard)
		})
	}
}

// TestScope: every selector of a provider-side query carries the agency's
// matcher, however the expression hides it.
func TestScope(t *testing.T) {
	for _, expr := range []string{
		`sum by (service) (sum_over_time(sla:slot:good_sum5m{month="2026-10"}[32d]))`,
		`a / on(service) group_left() b{agency="beta"}`,
		`max_over_time(up[1h:1m] offset 1d) or vector(1)`,
		`label_replace(probe_success, "agency", "beta", "", "")`,
	} {
		out, err := Scope(expr, "alpha")
		require.NoError(t, err)
		e, err := parser.NewParser(parser.Options{}).ParseExpr(out)
		require.NoError(t, err, out)
		n := 0
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				n++
				found := false
				for _, m := range vs.LabelMatchers {
					found = found || (m.Name == Label && m.Value == "alpha" && m.Type == 0)
				}
				require.True(t, found, "selector %s of %s lacks agency=\"alpha\"", vs, out)
			}
			return nil
		})
		require.Positive(t, n)
	}
	_, err := Scope(`up{`, "alpha")
	require.Error(t, err)
	_, err = Scope(`up`, "")
	require.Error(t, err)
}

func TestReservedNames(t *testing.T) {
	for name, want := range map[string]bool{
		"sla:objective": true, "sla:slot:good_sum5m": true, "samdrift_sla_month": true, "samdrift_incident_open": true,
		"ALERTS": true, "ALERTS_FOR_STATE": true,
		"up": false, "probe_success": false, "slo:sli_error:ratio_rate5m": false, "http_requests_total": false, "exported_sla:objective": false,
	} {
		require.Equal(t, want, ReservedName(name), name)
	}
	require.True(t, ReservedLabel("agency"))
	require.True(t, ReservedLabel(OriginLabel))
	require.False(t, ReservedLabel("service"))
}
