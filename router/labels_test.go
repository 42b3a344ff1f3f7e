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
	}{
		{"adds agency and service", source{agency: alpha, service: "web"}, series("__name__", "up", "job", "web"),
			map[string]string{"__name__": "up", "job": "web", "agency": "alpha", "service": "web"}},
		{"sender's agency is exported, never trusted", source{agency: alpha, service: "web"}, series("__name__", "m", "agency", "beta"),
			map[string]string{"__name__": "m", "agency": "alpha", "exported_agency": "beta", "service": "web"}},
		{"existing exported_agency is kept", source{agency: alpha, service: "web"}, series("__name__", "m", "agency", "beta", "exported_agency", "gamma"),
			map[string]string{"__name__": "m", "agency": "alpha", "exported_agency": "gamma", "exported_exported_agency": "beta", "service": "web"}},
		{"service-bound source exports service", source{agency: alpha, service: "web"}, series("__name__", "m", "service", "other"),
			map[string]string{"__name__": "m", "agency": "alpha", "service": "web", "exported_service": "other"}},
		{"push source keeps sender's service", source{agency: alpha}, series("__name__", "m", "service", "checkout", "agency", "beta"),
			map[string]string{"__name__": "m", "agency": "alpha", "service": "checkout", "exported_agency": "beta"}},
		{"agency relabel rules apply", source{agency: alpha, service: "web"}, series("__name__", "debug_x"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{tc.in}}
			n := relabelWriteRequest(wr, tc.src)
			if tc.want == nil {
				require.Empty(t, wr.Timeseries)
				require.Zero(t, n)
				return
			}
			require.Len(t, wr.Timeseries, 1)
			require.Equal(t, 1, n)
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
	names := []string{"__name__", "agency", "exported_agency", "exported_exported_agency", "service", "exported_service", "job", "zone", "a"}
	for range 2000 {
		var ls []prompb.Label
		for _, n := range names {
			if n == "__name__" || r.IntN(3) == 0 {
				ls = append(ls, prompb.Label{Name: n, Value: n + "-" + strconv.Itoa(r.IntN(3))})
			}
		}
		r.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
		svc := ""
		if r.IntN(2) == 0 {
			svc = "web"
		}
		src := source{agency: a, service: svc}
		mk := func() *prompb.WriteRequest {
			return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: slices.Clone(ls), Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}}}
		}
		fast, slow := mk(), mk()
		require.Equal(t, relabelWithBuilder(slow, src), setOwnedLabels(fast, src))
		require.Equal(t, slow.Timeseries[0].Labels, fast.Timeseries[0].Labels, "input %v service %q", ls, svc)
	}
}
