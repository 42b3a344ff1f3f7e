package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/testutil"
)

// TestDeadLetterCommands: a careless agency publishes a message the router
// cannot decode on its own NATS subject. The router moves it to the agency's
// dead letters and goes on (alpha's next sample is stored); ops list it, an
// admin replays it with `samdrift deadletter replay` (it dies again, as it
// must) and discards it; the agency itself sees none of this.
func TestDeadLetterCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	an := testutil.StartAgencyNATS(t, dir, "alpha", "beta")
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, onboardCatalogue(`  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: `+catalogue.HashToken(betaToken)+`}]
`))
	addr := freeAddr(t)
	auditPath := filepath.Join(dir, "audit.log")
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--nats.url", an.ProviderURL(), "--audit-log", auditPath)

	nc, err := nats.Connect("nats://"+an.Server.Addr().String(), nats.UserInfo("alpha", "alpha-nats-secret"))
	require.NoError(t, err)
	defer nc.Close()
	js, err := nc.JetStream()
	require.NoError(t, err)
	_, err = js.Publish(bus.AgencyMetricsSubject, []byte("this is not snappy remote-write"))
	require.NoError(t, err, "JetStream acknowledges the publish: from here on it must not vanish")

	url := "http://" + addr
	var listed string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		listed = cli(c, 0, "deadletter", "list", "--url", url, "--token", opsToken)
		assert.Contains(c, listed, "alpha")
	}, 30*time.Second, 200*time.Millisecond)
	require.Contains(t, listed, "undecodable")
	require.Contains(t, listed, "router")
	seq := firstSeq(t, listed)

	// The stream moved on: alpha's next push is stored.
	require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(time.Now(), 1, "__name__", "after_poison_total")).code)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, alphaToken, `after_poison_total`), 1)
	}, 30*time.Second, 200*time.Millisecond)

	// Only an admin acts on dead letters; no agency lists them.
	require.Contains(t, cli(t, 1, "deadletter", "replay", seq, "--url", url, "--token", opsToken), "403")
	require.Contains(t, cli(t, 1, "deadletter", "list", "--url", url, "--token", alphaToken), "403")
	require.Contains(t, cli(t, 1, "deadletter", "discard", "999999", "--url", url, "--token", adminToken), "no dead letter 999999")

	out := cli(t, 0, "deadletter", "replay", seq, "--url", url, "--token", adminToken)
	require.Contains(t, out, "replayed to ingest.metrics.")
	// Replayed, it fails again and comes back under a new number.
	var again string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		listed = cli(c, 0, "deadletter", "list", "--url", url, "--token", adminToken, "--agency", "alpha")
		if assert.Contains(c, listed, "undecodable") {
			again = firstSeq(c, listed)
			assert.NotEqual(c, seq, again)
		}
	}, 30*time.Second, 200*time.Millisecond)
	require.Contains(t, cli(t, 0, "deadletter", "discard", again, "--url", url, "--token", adminToken), "discarded")
	require.Contains(t, cli(t, 0, "deadletter", "list", "--url", url, "--token", adminToken), "No dead letters.")
	require.Contains(t, cli(t, 0, "deadletter", "list", "--url", url, "--token", adminToken, "--agency", "beta"), "No dead letters.")

	var actions []string
	for _, e := range auditActions(t, auditPath) {
		if a, _ := e["action"].(string); strings.HasPrefix(a, "deadletter_") {
			actions = append(actions, a)
		}
	}
	require.Equal(t, []string{"deadletter_replayed", "deadletter_discarded"}, actions, "admin actions on dead letters are audited")
}

// firstSeq is the sequence number of the first row of `deadletter list`.
func firstSeq(t T, listed string) string {
	helper(t)
	lines := strings.Split(strings.TrimSpace(listed), "\n")
	require.GreaterOrEqual(t, len(lines), 2, listed)
	return strings.Fields(lines[1])[0]
}
