package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// writeBlock writes one TSDB block of series name (one sample a minute)
// from start to end into an agency's store directory.
func writeBlock(t *testing.T, dir, agency, name string, start, end time.Time) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o750))
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, end.Sub(start).Milliseconds()+1)
	require.NoError(t, err)
	defer w.Close()
	app := w.Appender(context.Background())
	for ts := start; ts.Before(end); ts = ts.Add(time.Minute) {
		_, err := app.Append(0, labels.FromStrings("__name__", name, "agency", agency), ts.UnixMilli(), 1)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	_, err = w.Flush(context.Background())
	require.NoError(t, err)
}

// TestRetentionAndSeriesDeletion: alpha keeps two hours, beta the default
// 90 days: alpha's older block is gone once its store opens, beta's stays.
// An admin deletes alpha's series that carried personal data by mistake:
// a dry run counts them and deletes nothing, the deletion removes only
// those series of alpha (beta's of the same name stay), is audited, and
// a selector naming beta, or an agency's own token, is refused.
func TestRetentionAndSeriesDeletion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	now := time.Now().Truncate(time.Minute)
	for _, a := range []string{"alpha", "beta"} {
		writeBlock(t, filepath.Join(data, "tsdb", a), a, "history_metric", now.Add(-10*time.Hour), now.Add(-8*time.Hour))
		writeBlock(t, filepath.Join(data, "tsdb", a), a, "history_metric", now.Add(-90*time.Minute), now.Add(-30*time.Minute))
	}
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
  admin:
    credentials: [{name: privacy-desk, token_sha256: %s}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    retention: 2h
    credentials: [{name: alpha-cred, token_sha256: %s}]
  - id: beta
    name: Beta
    phase: run
    credentials: [{name: beta-cred, token_sha256: %s}]
`, catalogue.HashToken(opsToken), catalogue.HashToken(adminToken), catalogue.HashToken(alphaToken), catalogue.HashToken(betaToken)))
	auditLog := filepath.Join(dir, "audit.log")
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", data, "--audit-log", auditLog)
	base := "http://" + addr

	samples := func(token, q string) string {
		v := query(t, addr, token, q)
		if len(v) == 0 {
			return "none"
		}
		return v[0].Value[1].(string)
	}
	require.Equal(t, "60", samples(alphaToken, `count_over_time(history_metric[12h])`), "alpha keeps its last two hours only")
	require.Equal(t, "180", samples(betaToken, `count_over_time(history_metric[12h])`), "beta keeps both blocks")

	// Personal data by mistake, in both agencies.
	for _, tok := range []string{alphaToken, betaToken} {
		require.Equal(t, 204, pushRW(t, addr, tok,
			ts(now, 1, "__name__", "login_total", "user", "anna.svensson@example.se"),
			ts(now, 1, "__name__", "login_total", "user", "erik.berg@example.se"),
			ts(now, 5, "__name__", "keep_me")).code)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Len(c, query(c, addr, opsToken, `login_total`), 4)
	}, 30*time.Second, 200*time.Millisecond)

	from := now.Add(-time.Hour).Format(time.RFC3339)
	dry := cli(t, 0, "series", "delete", "--url", base, "--token", adminToken, "--agency", "alpha", "--selector", `{__name__="login_total",user=~".+@example.se"}`, "--from", from)
	require.Contains(t, dry, "2 series of alpha match")
	require.Len(t, query(t, addr, alphaToken, `login_total`), 2, "a dry run deletes nothing")

	for _, bad := range []struct {
		token, body string
		code        int
	}{
		{alphaToken, `{"agency":"alpha","selector":"login_total","start":"` + from + `","end":"` + now.Format(time.RFC3339) + `","dry_run":false}`, http.StatusForbidden},
		{adminToken, `{"agency":"alpha","selector":"{agency=\"beta\"}","start":"` + from + `","end":"` + now.Format(time.RFC3339) + `","dry_run":false}`, http.StatusBadRequest},
		{adminToken, `{"agency":"alpha","selector":"login_total{","start":"` + from + `","end":"` + now.Format(time.RFC3339) + `"}`, http.StatusBadRequest},
		{adminToken, `{"agency":"nobody","selector":"login_total","start":"` + from + `","end":"` + now.Format(time.RFC3339) + `"}`, http.StatusBadRequest},
	} {
		r, err := client(addr, bad.token).Do(http.MethodPost, "/api/v1/admin/series/delete", "application/json", []byte(bad.body))
		require.NoError(t, err)
		require.Equal(t, bad.code, r.Status, "%s: %s", bad.body, r.Body)
	}
	require.Len(t, query(t, addr, opsToken, `login_total`), 4, "nothing deleted by the refused attempts")

	out := cli(t, 0, "series", "delete", "--url", base, "--token", adminToken, "--agency", "alpha", "--selector", `{__name__="login_total",user=~".+@example.se"}`, "--from", from, "--yes")
	require.Contains(t, out, "Deleted 2 series of alpha")
	require.Empty(t, query(t, addr, alphaToken, `login_total`), "alpha's series are gone")
	require.Len(t, query(t, addr, alphaToken, `keep_me`), 1, "alpha's other series stay")
	require.Len(t, query(t, addr, betaToken, `login_total`), 2, "beta's series of the same name stay")
	require.True(t, hasAudit(auditActions(t, auditLog), "series_deleted", "alpha", "privacy-desk"))
}

// TestSeriesDeletionEveryReplica: with two query processes (each a store
// replica), a deletion made through one is applied by the other too.
func TestSeriesDeletionEveryReplica(t *testing.T) {
	t.Parallel()
	_, natsURL := externalNATS(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, fmt.Sprintf(`provider: {name: Test provider, timezone: Europe/Stockholm}
roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
  admin:
    credentials: [{name: privacy-desk, token_sha256: %s}]
agencies:
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
`, catalogue.HashToken(opsToken), catalogue.HashToken(adminToken), catalogue.HashToken(alphaToken)))
	nf := []string{"--nats.url", natsURL}
	col := component(t, "collector", "c1", cfg, nf)
	component(t, "router", "r1", cfg, nf)
	q1 := component(t, "query", "q1", cfg, nf)
	q2 := component(t, "query", "q2", cfg, nf)
	now := time.Now()
	require.Equal(t, 204, pushRW(t, col.Addr, alphaToken, ts(now, 1, "__name__", "login_total", "user", "anna"), ts(now, 1, "__name__", "keep_me")).code)
	for _, q := range []*proc{q1, q2} {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Len(c, query(c, q.Addr, alphaToken, `{__name__=~"login_total|keep_me"}`), 2)
		}, 30*time.Second, 200*time.Millisecond)
	}
	cli(t, 0, "series", "delete", "--url", "http://"+q1.Addr, "--token", adminToken, "--agency", "alpha",
		"--selector", `{__name__="login_total"}`, "--from", now.Add(-time.Hour).Format(time.RFC3339), "--yes")
	require.Empty(t, query(t, q1.Addr, alphaToken, `login_total`))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Empty(c, query(c, q2.Addr, alphaToken, `login_total`), "the other replica deletes its copy")
	}, 30*time.Second, 200*time.Millisecond)
	require.Len(t, query(t, q2.Addr, alphaToken, `keep_me`), 1)
}
