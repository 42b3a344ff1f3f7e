package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"

	"github.com/samdrift/samdrift/bus"
)

// AgencyNATS is a NATS server configured as a site where agencies publish
// directly: the provider's SAMDRIFT account (user samdrift, password
// provider) and one account per agency as `samdrift agency onboard` writes
// it (user <agency>, password <agency>-nats-secret).
type AgencyNATS struct {
	Server   *server.Server
	Conf     string // the server's configuration file
	Accounts string // the directory of agency account files
}

// ProviderURL is the URL Samdrift connects with.
func (n *AgencyNATS) ProviderURL() string {
	return "nats://samdrift:provider@" + n.Server.Addr().String()
}

// StartAgencyNATS writes the accounts of agencies under dir and starts
// the server; it stops when the test ends.
func StartAgencyNATS(t testing.TB, dir string, agencies ...string) *AgencyNATS {
	t.Helper()
	n := &AgencyNATS{Conf: filepath.Join(dir, "nats.conf"), Accounts: filepath.Join(dir, "nats-accounts")}
	for _, a := range agencies {
		h, err := bcrypt.GenerateFromPassword([]byte(a+"-nats-secret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.WriteAgencyAccount(n.Accounts, a, a, string(h)); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`
listen: "127.0.0.1:-1"
jetstream: {store_dir: %q}
accounts: {
  SAMDRIFT: {
    jetstream: enabled
    users: [{user: samdrift, password: provider}]
    exports: [{service: "ingest.*.nats.*"}]
  }
  include "nats-accounts/index.conf"
}
`, filepath.Join(dir, "js"))
	if err := os.WriteFile(n.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(n.Conf)
	if err != nil {
		t.Fatal(err)
	}
	if n.Server, err = server.NewServer(opts); err != nil {
		t.Fatal(err)
	}
	n.Server.Start()
	t.Cleanup(n.Server.Shutdown)
	if !n.Server.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return n
}
