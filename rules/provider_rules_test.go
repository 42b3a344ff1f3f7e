package rules

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// TestProviderRuleFiles: the provider's rules are alerting rules (a
// recorded series would belong to no agency), and no agency may take the
// provider's id.
func TestProviderRuleFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yml")
	require.NoError(t, os.WriteFile(file, []byte("groups:\n  - name: g\n    rules:\n      - record: provider:probes_failing:count\n        expr: count(probe_success == 0)\n      - alert: Wide\n        expr: count(probe_success == 0) > 5\n"), 0o600))
	l := providerLoader{parser: parser.NewParser(parser.Options{})}
	_, errs := l.Load(file, false, model.UTF8Validation)
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "alerting rules")

	_, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: provider, name: X, phase: run}\n"), "c.yaml")
	require.ErrorContains(t, err, "provider's own")
}
