package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// TestProviderRules: six agencies' probes fail at once (one shared cause,
// as a DNS or network outage is). The provider's own rule — probes of more
// than five agencies failing — reads every agency's series and opens one
// incident under the provider's own Remedy company, which every agency's
// incident is linked to (in its "explains", or by its "explained_by").
// Agencies see their own incident only, never the provider's.
func TestProviderRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "provider-rules.yml")
	writeFile(t, rulesFile, `groups:
  - name: provider-wide
    rules:
      - alert: ProviderWideProbeFailure
        expr: count(count by (agency) (probe_success{samdrift_origin="probe"} == 0)) > 5
        for: 2s
        labels: {severity: critical, service: platform}
        annotations: {summary: "Probes of {{ $value }} agencies fail at once"}
`)
	var b strings.Builder
	fmt.Fprintf(&b, `provider:
  name: Test provider
  timezone: Europe/Stockholm
  rules: [%s]
  remedy: {company: Provider IT Operations, assigned_group: NOC}
defaults: {scrape_interval: 1s, evaluation_interval: 1s}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
agencies:
`, rulesFile, catalogue.HashToken(opsToken))
	var ids []string
	for i := 1; i <= 6; i++ {
		id := fmt.Sprintf("a%d", i)
		ids = append(ids, id)
		fmt.Fprintf(&b, `  - id: %s
    name: Agency %d
    phase: run
    credentials: [{name: %s-cred, token_sha256: %s}]
    services:
      - {id: web, name: Web, tier: high, sla: {availability: 99, for: 2s}, probes: [{http: "http://127.0.0.1:1/", timeout: 500ms}]}
`, id, i, id, catalogue.HashToken(id+"-token"))
	}
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, b.String())
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))

	var provider incident
	var agencyIncs []incident
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, all := incidents(c, addr, opsToken, "")
		var prov []incident
		agencyIncs = agencyIncs[:0]
		for _, inc := range all {
			if inc.Agency == catalogue.ProviderID {
				prov = append(prov, inc)
			} else if inc.AlertName == "ServiceDown" {
				agencyIncs = append(agencyIncs, inc)
			}
		}
		if assert.Len(c, prov, 1, "one provider incident, not one per agency") {
			provider = prov[0]
		}
		assert.Len(c, agencyIncs, 6)
	}, 60*time.Second, 500*time.Millisecond)
	require.Equal(t, "ProviderWideProbeFailure", provider.AlertName)
	require.Equal(t, "Provider IT Operations", provider.Company, "the provider's own Remedy company")
	explained, pointing := 0, 0
	for _, inc := range agencyIncs {
		switch {
		case slices.Contains(provider.Explains, inc.ID):
			explained++
		case inc.ExplainedBy == provider.ID:
			pointing++
		default:
			t.Fatalf("%s's incident %s is not linked to the provider's %s (explains %v)", inc.Agency, inc.ID, provider.ID, provider.Explains)
		}
	}
	t.Logf("provider incident %s: %d ServiceDown incidents opened before it are in its explains, %d opened after point to it (%d incidents explained in all)",
		provider.ID, explained, pointing, len(provider.Explains))

	// Agencies see their own incident, never the provider's.
	for _, id := range ids {
		_, own := incidents(t, addr, id+"-token", "")
		require.NotEmpty(t, own, id)
		for _, inc := range own {
			require.Equal(t, id, inc.Agency)
		}
	}
}
