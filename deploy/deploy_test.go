package deploy_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/deploy"
	"github.com/samdrift/samdrift/internal/node"
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

// TestNATSClusterConfigsLoad: the three cluster nodes' configs load with
// the accounts (provider, system, an onboarded agency) and route to each
// other.
func TestNATSClusterConfigsLoad(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"nats/accounts.conf", "nats/cluster/nats-1.conf", "nats/cluster/nats-2.conf", "nats/cluster/nats-3.conf"} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		p := filepath.Join(dir, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o600))
	}
	_, err := bus.WriteAgencyAccount(filepath.Join(dir, "nats", "nats-accounts"), "digg", "digg", "$2a$11$abcdefghijklmnopqrstuuJ3Qx5Vx3dQFZK8wq1Ykq6c0Z9Q0Z1yS")
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats", "cluster", fmt.Sprintf("nats-%d.conf", i)))
		require.NoError(t, err, "node %d", i)
		require.Equal(t, fmt.Sprintf("samdrift-nats-%d", i), opts.ServerName)
		require.True(t, opts.JetStream)
		require.Equal(t, time.Second, opts.SyncInterval)
		require.Equal(t, "samdrift", opts.Cluster.Name)
		require.Len(t, opts.Routes, 3)
		var names []string
		for _, a := range opts.Accounts {
			names = append(names, a.Name)
		}
		require.ElementsMatch(t, []string{bus.ProviderAccount, "SYS", bus.AccountName("digg")}, names)
		require.Equal(t, "SYS", opts.SystemAccount)
	}
}

// TestKubernetesManifests: every document parses, names a known kind, and
// every Samdrift container runs a real component with a unique instance.
func TestKubernetesManifests(t *testing.T) {
	f, err := os.Open("kubernetes/samdrift.yaml")
	require.NoError(t, err)
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := map[string]int{}
	components := map[string]bool{}
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Image string   `yaml:"image"`
							Args  []string `yaml:"args"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Contains(t, []string{"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment"}, doc.Kind, doc.Metadata.Name)
		kinds[doc.Kind]++
		for _, c := range doc.Spec.Template.Spec.Containers {
			if !strings.Contains(c.Image, "samdrift") {
				continue
			}
			require.Contains(t, node.Components, c.Args[0], "%s runs %q", doc.Metadata.Name, c.Args[0])
			require.Contains(t, c.Args, "--instance=$(POD_NAME)")
			require.Contains(t, c.Args, "--nats.replicas=3")
			components[c.Args[0]] = true
		}
	}
	require.Len(t, components, len(node.Components), "every component is deployed: %v", components)
	require.Equal(t, 3, kinds["Deployment"], "collector, router, ticketing")
	require.Equal(t, 3, kinds["StatefulSet"], "nats, rules, query")
}

// TestSystemdUnits: the template unit runs the component named by the
// instance, with the flags the component has.
func TestSystemdUnits(t *testing.T) {
	b, err := os.ReadFile("systemd/samdrift@.service")
	require.NoError(t, err)
	unit := string(b)
	require.Contains(t, unit, "ExecStart=/usr/bin/samdrift %i ")
	for _, flag := range []string{"--config", "--data-dir", "--instance", "--http.addr", "--nats.url", "--nats.replicas 3"} {
		require.Contains(t, unit, flag)
	}
	env, err := os.ReadFile("systemd/samdrift.env")
	require.NoError(t, err)
	for _, c := range node.Components {
		require.Contains(t, string(env), "SAMDRIFT_HTTP_ADDR_"+c+"=", "an HTTP address for %s", c)
	}
}
