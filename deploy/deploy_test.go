package deploy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/deploy"
)

func TestDemoCatalogueIsValid(t *testing.T) {
	_, err := catalogue.Parse(deploy.DemoCatalogue, "demo.yaml")
	require.NoError(t, err)
}

// TestNATSConfigLoads: the sample NATS server config loads with the account
// files onboarding writes beside it.
func TestNATSConfigLoads(t *testing.T) {
	b, err := os.ReadFile("nats/nats-server.conf")
	require.NoError(t, err)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats-server.conf")
	require.NoError(t, os.WriteFile(conf, b, 0o600))
	_, err = bus.WriteAgencyAccount(filepath.Join(dir, "nats-accounts"), "digg", "digg", "$2a$11$abcdefghijklmnopqrstuuJ3Qx5Vx3dQFZK8wq1Ykq6c0Z9Q0Z1yS")
	require.NoError(t, err)
	opts, err := server.ProcessConfigFile(conf)
	require.NoError(t, err)
	var names []string
	for _, a := range opts.Accounts {
		names = append(names, a.Name)
	}
	require.ElementsMatch(t, []string{bus.ProviderAccount, bus.AccountName("digg")}, names)
}
