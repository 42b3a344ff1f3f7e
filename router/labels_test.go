package router

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

func series(kv ...string) prompb.TimeSeries {
	return prompb.TimeSeries{
		Labels:  prompb.FromLabels(labels.FromStrings(kv...), nil),
		Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}},
	}
}

func labelsOf(ts prompb.TimeSeries) map[string]string {
	m := map[string]string{}
	for _, l := range ts.Labels {
		m[l.Name] = l.Value
	}
	return m
}

func TestRelabelWriteRequest(t *testing.T) {
	drop := &relabel.Config{Action: relabel.Drop, SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp("debug_.*"), Separator: ";"}
	alpha := &catalogue.Agency{ID: "alpha", RelabelConfigs: catalogue.RelabelConfigs{drop}}
	for _, tc := range []struct {
		name string
		src  source
		in   prompb.TimeSeries
		want map[string]string // nil: dropped
		// renamed: the series is stored under another name or without a
		// provider label it carried.
		renamed bool
	}{
		{"adds agency and service", source{agency: alpha, service: "web"}, series("__name__", "up", "job", "web"),
			map[string]string{"__name__": "up", "job": "web", "agency": "alpha", "service": "web"}, false},
		{"sender's agency is exported, never trusted", source{agency: alpha, service: "web"}, series("__name__", "m", "agency", "beta"),
			map[string]string{"__name__": "m", "agency": "alpha", "exported_agency": "beta", "service": "web"}, false},
		{"existing exported_agency is kept", source{agency: alpha, service: "web"}, series("__name__", "m", "agency", "beta", "exported_agency", "gamma"),
			map[string]string{"__name__": "m", "agency": "alpha", "exported_agency": "gamma", "exported_exported_agency": "beta", "service": "web"}, false},
		{"service-bound source exports service", source{agency: alpha, service: "web"}, series("__name__", "m", "service", "other"),
			map[string]string{"__name__": "m", "agency": "alpha", "service": "web", "exported_service": "other"}, false},
		{"push source keeps sender's service", source{agency: alpha}, series("__name__", "m", "service", "checkout", "agency", "beta"),
			map[string]string{"__name__": "m", "agency": "alpha", "service": "checkout", "exported_agency": "beta"}, false},
		{"agency relabel rules apply", source{agency: alpha, service: "web"}, series("__name__", "debug_x"), nil, false},
		// The provider's series stay the provider's.
		{"a pushed SLA aggregate is renamed", source{agency: alpha}, series("__name__", "sla:slot:good_sum5m", "service", "web", "month", "2026-10"),
			map[string]string{"__name__": "exported_sla:slot:good_sum5m", "agency": "alpha", "service": "web", "month": "2026-10"}, true},
		{"a pushed samdrift_ series is renamed", source{agency: alpha}, series("__name__", "samdrift_sla_in_scope", "service", "web"),
			map[string]string{"__name__": "exported_samdrift_sla_in_scope", "agency": "alpha", "service": "web"}, true},
		{"pushed ALERTS_FOR_STATE is renamed", source{agency: alpha}, series("__name__", "ALERTS_FOR_STATE", "alertname", "ServiceDown"),
			map[string]string{"__name__": "exported_ALERTS_FOR_STATE", "agency": "alpha", "alertname": "ServiceDown"}, true},
		{"a pushed origin label is exported", source{agency: alpha}, series("__name__", "probe_success", "service", "web", "samdrift_origin", "probe"),
			map[string]string{"__name__": "probe_success", "agency": "alpha", "service": "web", "exported_samdrift_origin": "probe"}, true},
		{"the collector's origin label stands", source{agency: alpha, service: "web", trusted: true}, series("__name__", "probe_success", "samdrift_origin", "probe"),
			map[string]string{"__name__": "probe_success", "agency": "alpha", "service": "web", "samdrift_origin": "probe"}, false},
		{"a scraped target's reserved name is renamed", source{agency: alpha, service: "web", trusted: true}, series("__name__", "sla:objective"),
			map[string]string{"__name__": "exported_sla:objective", "agency": "alpha", "service": "web"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{tc.in}}
			n := relabelWriteRequest(wr, tc.src)
			if tc.want == nil {
				require.Empty(t, wr.Timeseries)
				require.Zero(t, n.kept)
				return
			}
			require.Len(t, wr.Timeseries, 1)
			require.Equal(t, 1, n.kept)
			require.Equal(t, tc.renamed, n.renamed == 1)
			require.Equal(t, tc.want, labelsOf(wr.Timeseries[0]))
			// Labels stay sorted, as remote write requires.
			ls := wr.Timeseries[0].Labels
			for i := 1; i < len(ls); i++ {
				require.Less(t, ls[i-1].Name, ls[i].Name)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	cat, err := catalogue.Parse([]byte(`provider: {name: P}
roles:
  ops:
    credentials: [{name: noc, token_sha256: 1111111111111111111111111111111111111111111111111111111111111111}]
agencies:
  - {id: alpha, name: A, phase: run, services: [{id: web, name: W, tier: low}],
     credentials: [{name: alpha-push, token_sha256: 2222222222222222222222222222222222222222222222222222222222222222}]}
  - {id: plan, name: P, phase: plan, services: [{id: web, name: W, tier: low}],
     credentials: [{name: plan-push, token_sha256: 3333333333333333333333333333333333333333333333333333333333333333}]}
`), "c.yaml")
	require.NoError(t, err)
	for _, tc := range []struct {
		tokens  []string
		agency  string
		service string
		reason  string
	}{
		{[]string{"scrape", "alpha", "web"}, "alpha", "web", ""},
		{[]string{"push", "alpha-push"}, "alpha", "", ""},
		{[]string{"scrape", "ghost", "web"}, "", "", "unknown_agency"},
		{[]string{"scrape", "alpha", "ghost"}, "", "", "unknown_service"},
		{[]string{"push", "ghost"}, "", "", "unknown_credential"},
		{[]string{"push", "noc"}, "", "", "not_agency_credential"},
		{[]string{"push", "plan-push"}, "", "", "plan_phase"},
		{[]string{"scrape", "plan", "web"}, "", "", "plan_phase"},
		{[]string{"forged", "alpha"}, "", "", "unknown_source"},
		{[]string{"nats", "alpha"}, "alpha", "", ""},
		{[]string{"nats", "ghost"}, "", "", "unknown_agency"},
		{[]string{"nats", "plan"}, "", "", "plan_phase"},
		{[]string{"nats", "alpha", "extra"}, "", "", "unknown_source"},
	} {
		src, err := resolve(cat, tc.tokens, bus.KindMetrics)
		if tc.reason != "" {
			var rej *rejection
			require.ErrorAs(t, err, &rej, "%v", tc.tokens)
			require.Equal(t, tc.reason, rej.reason)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.agency, src.agency.ID)
		require.Equal(t, tc.service, src.service)
	}
}

// TestFastPathMatchesBuilder: the in-place path for agencies without
// relabel rules gives exactly what the general path gives.
func TestFastPathMatchesBuilder(t *testing.T) {
	a := &catalogue.Agency{ID: "alpha"}
	r := rand.New(rand.NewPCG(7, 8))
	names := []string{"__name__", "agency", "exported_agency", "exported_exported_agency", "service", "exported_service", "job", "zone", "a", "samdrift_origin", "exported_samdrift_origin"}
	for range 2000 {
		var ls []prompb.Label
		for _, n := range names {
			switch {
			case n == "__name__":
				ls = append(ls, prompb.Label{Name: n, Value: []string{"up", "sla:objective", "samdrift_x", "ALERTS"}[r.IntN(4)]})
			case r.IntN(3) == 0:
				ls = append(ls, prompb.Label{Name: n, Value: n + "-" + strconv.Itoa(r.IntN(3))})
			}
		}
		r.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
		svc := ""
		if r.IntN(2) == 0 {
			svc = "web"
		}
		src := source{agency: a, service: svc, trusted: r.IntN(2) == 0}
		mk := func() *prompb.WriteRequest {
			return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: slices.Clone(ls), Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}}}
		}
		fast, slow := mk(), mk()
		require.Equal(t, relabelWithBuilder(slow, src), setOwnedLabels(fast, src))
		require.Equal(t, slow.Timeseries[0].Labels, fast.Timeseries[0].Labels, "input %v service %q", ls, svc)
	}
}
