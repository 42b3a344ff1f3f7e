package rules

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/tenancy"
)

func engineCatalogue(t *testing.T, dir string) *catalogue.Catalogue {
	path := filepath.Join(dir, "catalogue.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`provider: {name: P}
defaults: {evaluation_interval: 1s}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    rule_files: [alpha.rules.yml]
    services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}, probes: [{http: "http://127.0.0.1:1/"}]}]
  - id: beta
    name: Beta
    phase: run
    services: [{id: api, name: API, tier: low, scrape: [{targets: ["127.0.0.1:1"]}]}]
`), 0o600))
	c, err := catalogue.LoadFile(path)
	require.NoError(t, err)
	return c
}

func newEngine(t *testing.T, c *catalogue.Catalogue) (*Engine, *store.Store) {
	st, err := store.New(store.Options{Dir: filepath.Join(t.TempDir(), "tsdb")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Apply(c))
	e := New(Options{Stores: st, Engine: store.NewEngine(nil, nil), Dir: t.TempDir(), ExternalURL: "http://s"})
	t.Cleanup(e.Stop)
	return e, st
}

func TestEngineRuleFilesAndIsolation(t *testing.T) {
	dir := t.TempDir()
	c := engineCatalogue(t, dir)
	rf := filepath.Join(dir, "alpha.rules.yml")
	good := "groups:\n  - name: alpha-own\n    rules:\n      - record: alpha:up:sum\n        expr: sum(up)\n"
	require.NoError(t, os.WriteFile(rf, []byte(good), 0o600))
	e, _ := newEngine(t, c)
	require.NoError(t, e.Apply(c))

	names := func(id tenancy.Identity) []string {
		var out []string
		for _, g := range e.Retriever(tenancy.NewContext(context.Background(), id)).RuleGroups() {
			out = append(out, g.File()[strings.LastIndex(g.File(), "/")+1:]+":"+g.Name())
		}
		return out
	}
	alpha := tenancy.Identity{Role: tenancy.RoleAgency, Agency: "alpha"}
	beta := tenancy.Identity{Role: tenancy.RoleAgency, Agency: "beta"}
	require.Contains(t, names(alpha), "alpha.rules.yml:alpha-own")
	require.Contains(t, names(alpha), "sla.yml:sla-slots")
	for _, n := range names(beta) {
		require.NotContains(t, n, "alpha", "beta sees none of alpha's rules")
	}
	require.Contains(t, names(tenancy.Identity{Role: tenancy.RoleOps}), "alpha.rules.yml:alpha-own")
	require.Empty(t, e.Retriever(context.Background()).RuleGroups(), "no identity, no rules")
	for _, ar := range e.Retriever(tenancy.NewContext(context.Background(), beta)).AlertingRules() {
		require.NotEqual(t, "alpha", ar.Labels().Get("agency"))
	}

	for _, tc := range []struct {
		name, content, want string
		// sameAsPromtool: Debian's promtool (2.42) words the message as
		// we do; for durations it predates the wording of the Prometheus
		// library we ship, whose own promtool prints our text.
		sameAsPromtool bool
	}{
		{"syntax error", "groups:\n  - name: broken\n    rules:\n      - record: x\n        expr: sum(up\n", "could not parse expression", true},
		{"unknown function", "groups:\n  - name: broken\n    rules:\n      - record: x\n        expr: nosuchfn(up)\n", `unknown function with name "nosuchfn"`, true},
		{"bad duration", "groups:\n  - name: broken\n    rules:\n      - alert: X\n        expr: up == 0\n        for: 5 minutes\n", `unknown unit " minutes" in duration "5 minutes"`, false},
		{"reads another agency", "groups:\n  - name: sneaky\n    rules:\n      - record: x\n        expr: sum(up{agency=\"beta\"})\n", `its selectors name agency "beta": an agency's rules can only read its own data`, false},
		{"regex naming another agency", "groups:\n  - name: sneaky\n    rules:\n      - alert: X\n        expr: up{agency=~\"b.*\"} == 0\n", `name agency "beta"`, false},
		{"all but its own", "groups:\n  - name: sneaky\n    rules:\n      - alert: X\n        expr: up{agency!=\"alpha\"} == 0\n", `name agency "beta"`, false},
		// The provider's series stay the provider's.
		{"records a provider's name", "groups:\n  - name: forge\n    rules:\n      - record: sla:slot:good_sum5m\n        expr: vector(1)\n", `"sla:slot:good_sum5m" is a name reserved for Samdrift's own series`, false},
		{"records a samdrift_ series", "groups:\n  - name: forge\n    rules:\n      - record: samdrift_sla_in_scope\n        expr: vector(0)\n", `is a name reserved`, false},
		{"sets the origin label", "groups:\n  - name: forge\n    rules:\n      - record: probe_success\n        expr: vector(0)\n        labels: {samdrift_origin: probe, service: web}\n", `label "samdrift_origin" is set by Samdrift`, false},
		{"sets the agency label", "groups:\n  - name: forge\n    rules:\n      - record: x\n        expr: vector(0)\n        labels: {agency: beta}\n", `label "agency" is set by Samdrift`, false},
		{"shadows a generated alert", "groups:\n  - name: forge\n    rules:\n      - alert: ServiceDown\n        expr: vector(1)\n", `alert "ServiceDown" is raised by Samdrift's SLA rules`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(rf, []byte(tc.content), 0o600))
			err := e.Apply(c)
			require.ErrorContains(t, err, "error loading rules, previous rule set restored")
			// The previous rules keep running.
			require.Contains(t, names(alpha), "alpha.rules.yml:alpha-own")
			// The message is the one promtool gives for the same file.
			_, problems := (&loader{agency: "alpha", catalogue: c, parser: e.parser}).Load(rf, false, model.UTF8Validation)
			require.NotEmpty(t, problems)
			require.Contains(t, fmt.Sprint(problems), tc.want)
			if pt, err := exec.LookPath("promtool"); err == nil && tc.sameAsPromtool {
				out, _ := exec.Command(pt, "check", "rules", rf).CombinedOutput()
				for _, p := range problems {
					require.Contains(t, string(out), firstLine(p.Error()), "promtool says it too")
				}
			}
		})
	}
	// A fixed file is picked up by the next reload.
	require.NoError(t, os.WriteFile(rf, []byte(strings.ReplaceAll(good, "alpha-own", "alpha-fixed")), 0o600))
	require.NoError(t, e.Apply(c))
	require.Contains(t, names(alpha), "alpha.rules.yml:alpha-fixed")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// TestPublishRuleOutputs: with Publish set (rules in a process of their
// own), every committed rule output and calendar sample is handed on for
// the other store replicas, under its own agency only, and the rules still
// read their outputs from the local TSDB.
func TestPublishRuleOutputs(t *testing.T) {
	dir := t.TempDir()
	c := engineCatalogue(t, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alpha.rules.yml"), []byte("groups:\n  - name: alpha-own\n    interval: 1s\n    rules:\n      - record: alpha:one\n        expr: vector(1)\n      - record: alpha:two\n        expr: alpha:one * 2\n"), 0o600))
	st, err := store.New(store.Options{Dir: filepath.Join(t.TempDir(), "tsdb")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Apply(c))
	var mu sync.Mutex
	got := map[string]map[string]float64{} // agency -> metric name -> last value
	publish := func(_ context.Context, agency string, wr *prompb.WriteRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if got[agency] == nil {
			got[agency] = map[string]float64{}
		}
		for _, ts := range wr.Timeseries {
			name, ag := "", ""
			for _, l := range ts.Labels {
				switch l.Name {
				case "__name__":
					name = l.Value
				case "agency":
					ag = l.Value
				}
			}
			if ag != "" && ag != agency {
				return fmt.Errorf("published %s of agency %q under %q", name, ag, agency)
			}
			got[agency][name] = ts.Samples[len(ts.Samples)-1].Value
		}
		return nil
	}
	e := New(Options{Stores: st, Engine: store.NewEngine(nil, nil), Dir: t.TempDir(), ExternalURL: "http://s", Publish: publish})
	t.Cleanup(e.Stop)
	require.NoError(t, e.Apply(c))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["alpha"]["alpha:two"] == 2 && got["alpha"]["samdrift_sla_in_scope"] == 1
	}, 15*time.Second, 100*time.Millisecond, "published: %v", got)
	mu.Lock()
	defer mu.Unlock()
	for name := range got["beta"] {
		require.False(t, strings.HasPrefix(name, "alpha:"), "beta's outputs hold nothing of alpha")
	}
}
