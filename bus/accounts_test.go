package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/internal/testutil"
)

// TestAgencyAccounts runs a NATS server on generated agency accounts: an
// agency's publish lands in the provider's INGEST stream on its own source
// subject, whatever subject it tries, and another agency's password does not
// open its account.
func TestAgencyAccounts(t *testing.T) {
	dir := t.TempDir()
	an := testutil.StartAgencyNATS(t, dir, "alpha", "beta")
	s, accounts, conf := an.Server, an.Accounts, an.Conf
	_, err := bus.WriteAgencyAccount(accounts, "alpha", "alpha", "$2a$04$x")
	require.Error(t, err, "an existing account is not overwritten")
	_, err = bus.AgencyAccount("Bad.ID", "x", "$2a$04$x")
	require.Error(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URLs: []string{an.ProviderURL()}})
	require.NoError(t, err)
	defer b.Close()

	connect := func(user, pass string) (*nats.Conn, error) {
		return nats.Connect("nats://"+s.Addr().String(), nats.UserInfo(user, pass))
	}
	_, err = connect("alpha", "beta-nats-secret")
	require.Error(t, err, "wrong password")

	nc, err := connect("alpha", "alpha-nats-secret")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ack, err := js.Publish(ctx, bus.AgencyMetricsSubject, []byte("m1"))
	require.NoError(t, err, "the agency's publish reaches the provider's stream and is acknowledged")
	require.Equal(t, bus.StreamIngest, ack.Stream)
	// Subjects outside its permissions never reach the provider.
	require.NoError(t, nc.Publish(bus.IngestSubject(bus.KindMetrics, bus.SourceNATS, "beta"), []byte("forged")))
	require.NoError(t, nc.Publish("ingest.metrics.push.beta-push", []byte("forged")))
	require.NoError(t, nc.Flush())

	// The forged publishes were sent before a publish that is stored
	// after them: had they been accepted, they would be stored by now.
	ack, err = js.Publish(ctx, bus.AgencyMetricsSubject, []byte("m2"))
	require.NoError(t, err)
	msgs, err := b.Messages(ctx, bus.StreamIngest, ">", 0)
	require.NoError(t, err)
	require.Len(t, msgs, 2, "only the permitted publishes arrived")
	require.Equal(t, "ingest.metrics.nats.alpha", msgs[0].Subject)
	require.Equal(t, "m1", string(msgs[0].Data))
	require.Equal(t, ack.Sequence, msgs[1].Sequence)

	// Offboarding removes the account from the index.
	require.NoError(t, bus.RemoveAgencyAccount(accounts, "alpha"))
	idx, err := os.ReadFile(filepath.Join(accounts, bus.AccountIndex))
	require.NoError(t, err)
	require.NotContains(t, string(idx), "alpha.conf")
	require.Contains(t, string(idx), "beta.conf")
	_, err = server.ProcessConfigFile(conf)
	require.NoError(t, err, "the config still loads")
}
