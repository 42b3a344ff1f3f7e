package e2e

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/dashboards"
	"github.com/samdrift/samdrift/dashboards/grafana/grafanasim"
)

// TestDashboardsProvision: `samdrift dashboards provision` against the
// Grafana simulator, then the provisioned data source's credential queries
// the running Samdrift as its agency alone, read-only.
func TestDashboardsProvision(t *testing.T) {
	t.Parallel()
	sim := grafanasim.New("admin", "gf-secret")
	gf := httptest.NewServer(sim)
	defer gf.Close()
	dir := t.TempDir()
	addr := freeAddr(t)
	pw := filepath.Join(dir, "gf-password")
	writeFile(t, pw, "gf-secret\n")
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, pushCatalogue()+fmt.Sprintf("grafana:\n  url: %s\n  username: admin\n  password_file: %s\n  datasource_url: http://%s/prometheus\n", gf.URL, pw, addr))

	out, err := execCommand(binary, "dashboards", "provision", "--config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "4 organisations: 4 changed, 0 unchanged, 0 failed")
	out, err = execCommand(binary, "dashboards", "provision", "--config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "4 organisations: 0 changed, 4 unchanged, 0 failed")
	out, err = execCommand(binary, "dashboards", "provision", "--config", cfg, "--grafana.password-file", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "refused the admin user")

	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(time.Now(), 1, "__name__", "gf_metric")).code)
	require.Equal(t, 204, pushRW(t, addr, betaToken, ts(time.Now(), 2, "__name__", "gf_metric")).code)
	header := sim.OrgByName("Samdrift: Alpha (alpha)").Secure[dashboards.DatasourceUID]["httpHeaderValue1"]
	token := strings.TrimPrefix(header, "Bearer ")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, token, `gf_metric`), 1) }, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, "alpha", query(t, addr, token, `gf_metric`)[0].Metric["agency"], "alpha's Grafana sees alpha only")
	r := pushRW(t, addr, token, ts(time.Now(), 3, "__name__", "sneaky"))
	require.Equal(t, 403, r.code, "the Grafana credential is read-only")
	noc := strings.TrimPrefix(sim.OrgByName("Samdrift NOC").Secure[dashboards.DatasourceUID]["httpHeaderValue1"], "Bearer ")
	require.Len(t, query(t, addr, noc, `gf_metric`), 2, "the NOC sees every agency")
}
