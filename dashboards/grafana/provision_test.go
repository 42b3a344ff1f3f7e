package grafana_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grafana/grafana-openapi-client-go/models"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards"
	"github.com/samdrift/samdrift/dashboards/grafana"
	"github.com/samdrift/samdrift/dashboards/grafana/grafanasim"
	"github.com/samdrift/samdrift/tenancy"
)

const cat1 = `provider: {name: Provider IT}
agencies:
  - {id: alpha, name: Alpha, phase: run, services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}, probes: [{http: "https://a.example/"}]}]}
  - {id: beta, name: Beta, phase: build, services: [{id: api, name: API, tier: low, sla: {availability: 99}, scrape: [{targets: ["b:9100"]}]}]}
  - {id: gamma, name: Gamma, phase: plan}
`

var key = []byte("0123456789abcdef0123456789abcdef")

func setup(t *testing.T) (*grafanasim.Sim, string) {
	sim := grafanasim.New("admin", "secret")
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func run(t *testing.T, url, password, catalog string, prune bool) (grafana.Summary, string, error) {
	c, err := catalogue.Parse([]byte(catalog), "c.yaml")
	require.NoError(t, err)
	var out bytes.Buffer
	p, err := grafana.New(grafana.Options{URL: url, Username: "admin", Password: password, DatasourceURL: "http://samdrift:9470/prometheus", Key: key, Prune: prune, Progress: &out})
	require.NoError(t, err)
	sum, err := p.Run(context.Background(), c)
	return sum, out.String(), err
}

func TestProvision(t *testing.T) {
	sim, url := setup(t)

	// First run: an org per agency that accepts data, and the NOC.
	sum, out, err := run(t, url, "secret", cat1, false)
	require.NoError(t, err)
	require.Empty(t, sum.Failed(), out)
	require.Equal(t, []string{"Main Org.", "Samdrift NOC", "Samdrift: Alpha (alpha)", "Samdrift: Beta (beta)"}, sim.Orgs())
	alpha := sim.OrgByName("Samdrift: Alpha (alpha)")
	ds := alpha.Datasources[dashboards.DatasourceUID]
	require.Equal(t, "http://samdrift:9470/prometheus", ds.URL)
	require.Len(t, alpha.Datasources, 1, "the agency's org holds its own data source only")
	// The credential is alpha's, read-only, and Samdrift accepts it.
	header := alpha.Secure[dashboards.DatasourceUID]["httpHeaderValue1"]
	require.True(t, strings.HasPrefix(header, "Bearer sdg_alpha."))
	c, _ := catalogue.Parse([]byte(cat1), "c.yaml")
	c.SetGrafanaKey(key)
	id, ok := c.Authenticate(strings.TrimPrefix(header, "Bearer "))
	require.True(t, ok)
	require.Equal(t, tenancy.Identity{Role: tenancy.RoleAgency, Agency: "alpha", Credential: "grafana-alpha", ReadOnly: true}, id)
	nocHeader := sim.OrgByName("Samdrift NOC").Secure[dashboards.DatasourceUID]["httpHeaderValue1"]
	id, ok = c.Authenticate(strings.TrimPrefix(nocHeader, "Bearer "))
	require.True(t, ok)
	require.Equal(t, tenancy.RoleOps, id.Role)
	_, ok = c.Authenticate("sdg_beta.forged")
	require.False(t, ok)
	require.NotNil(t, alpha.Dashboards[dashboards.AgencyUID("alpha")])
	require.Nil(t, alpha.Dashboards[dashboards.AgencyUID("beta")], "no other agency's dashboard in alpha's org")
	require.NotNil(t, sim.OrgByName("Samdrift NOC").Dashboards[dashboards.NOCUID])
	require.Contains(t, out, "alpha        org created, data source created, folder created, dashboard created")

	// Second run: nothing changes.
	writes := sim.Writes()
	sum, out, err = run(t, url, "secret", cat1, false)
	require.NoError(t, err)
	require.Equal(t, writes, sim.Writes(), "a second run writes nothing:\n%s", out)
	for _, r := range sum.Results {
		require.False(t, r.Changed(), "%s: %v", r.Org, r.Actions)
	}

	// A changed catalogue updates only what changed.
	cat2 := strings.Replace(cat1, "sla: {availability: 99.5}", "sla: {availability: 99.9}", 1)
	sum, out, err = run(t, url, "secret", cat2, false)
	require.NoError(t, err)
	changed := map[string][]string{}
	for _, r := range sum.Results {
		if r.Changed() {
			changed[r.Org] = r.Actions
		}
	}
	require.Equal(t, map[string][]string{"Samdrift: Alpha (alpha)": {"org unchanged", "data source unchanged", "folder unchanged", "dashboard updated"}}, changed, out)

	// An agency removed from the catalogue: reported, kept, pruned on request.
	cat3 := strings.Replace(cat2, "  - {id: beta,", "  - {id: betax,", 1)
	cat3 = strings.Replace(cat3, "phase: build", "phase: plan", 1)
	sum, out, err = run(t, url, "secret", cat3, false)
	require.NoError(t, err)
	require.Equal(t, []string{"Samdrift: Beta (beta)"}, sum.Removed)
	require.Contains(t, out, "kept (use --prune to delete)")
	require.NotNil(t, sim.OrgByName("Samdrift: Beta (beta)"))
	_, _, err = run(t, url, "secret", cat3, true)
	require.NoError(t, err)
	require.Nil(t, sim.OrgByName("Samdrift: Beta (beta)"))
}

func TestProvisionFailures(t *testing.T) {
	sim, url := setup(t)

	_, _, err := run(t, url, "wrong", cat1, false)
	require.ErrorContains(t, err, `refused the admin user "admin"`)
	_, _, err = run(t, "http://127.0.0.1:1", "secret", cat1, false)
	require.ErrorContains(t, err, "grafana unreachable at http://127.0.0.1:1")

	// Failure midway: the failing agency is named with what was done, the
	// rest carries on; a rerun completes it.
	sim.FailWrite(7) // NOC takes 4 writes; alpha's org and data source succeed, its folder fails
	sum, out, err := run(t, url, "secret", cat1, false)
	require.NoError(t, err)
	failed := sum.Failed()
	require.Len(t, failed, 1, out)
	require.Equal(t, "alpha", failed[0].Agency)
	require.Equal(t, []string{"org created", "data source created"}, failed[0].Actions)
	require.Contains(t, out, "alpha        FAILED after [org created, data source created]: folder:")
	sum, out, err = run(t, url, "secret", cat1, false)
	require.NoError(t, err)
	require.Empty(t, sum.Failed(), out)
	require.NotNil(t, sim.OrgByName("Samdrift: Alpha (alpha)").Dashboards[dashboards.AgencyUID("alpha")])

	// A leftover data source (our name, another uid) is replaced.
	sim2, url2 := setup(t)
	sim2.AddOrg("Samdrift: Alpha (alpha)", &models.DataSource{UID: "old-uid", Name: "Samdrift", Type: "prometheus", URL: "http://old"})
	sum, out, err = run(t, url2, "secret", cat1, false)
	require.NoError(t, err)
	require.Empty(t, sum.Failed(), out)
	o := sim2.OrgByName("Samdrift: Alpha (alpha)")
	require.Len(t, o.Datasources, 1)
	require.NotNil(t, o.Datasources[dashboards.DatasourceUID])

	// An org with our name that someone else made: refused, clearly.
	sim3, url3 := setup(t)
	sim3.AddOrg("Samdrift: Alpha (alpha)", &models.DataSource{UID: "finance", Name: "Finance DB", Type: "postgres"})
	sum, _, err = run(t, url3, "secret", cat1, false)
	require.NoError(t, err)
	require.Len(t, sum.Failed(), 1)
	require.ErrorContains(t, sum.Failed()[0].Err, "was not made by Samdrift (it holds data sources Finance DB)")
	require.Len(t, sim3.OrgByName("Samdrift: Alpha (alpha)").Datasources, 1, "nothing of ours was added to it")
}

// TestExportLoads: `samdrift dashboards export` output is what a Grafana
// started with it loads: the data source with the NOC credential from the
// environment, and every dashboard.
func TestExportLoads(t *testing.T) {
	c, err := catalogue.Parse([]byte(cat1), "c.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	res, err := dashboards.Export(c, dir, "http://samdrift:9470/prometheus", key)
	require.NoError(t, err)
	require.Len(t, res.Files, 5) // datasources, providers, NOC, alpha, beta
	name, token, _ := strings.Cut(res.Env, "=")
	require.Equal(t, dashboards.TokenEnv, name)
	sim := grafanasim.New("admin", "secret")
	require.NoError(t, sim.LoadProvisioning(dir, map[string]string{name: token}))
	main := sim.OrgByName("Main Org.")
	require.Equal(t, "Bearer "+catalogue.GrafanaToken(key, catalogue.GrafanaSubjectOps), main.Secure[dashboards.DatasourceUID]["httpHeaderValue1"])
	for _, uid := range []string{dashboards.NOCUID, dashboards.AgencyUID("alpha"), dashboards.AgencyUID("beta")} {
		require.NotNil(t, main.Dashboards[uid], uid)
	}
}
