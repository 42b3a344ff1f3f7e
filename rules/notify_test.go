package rules

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// TestNotifierMarksMaintenanceAndAgency: alerts leave on the agency's own
// subject with its agency label whatever the rule kept, and those that
// became active inside a maintenance window carry maintenance="true".
func TestNotifierMarksMaintenanceAndAgency(t *testing.T) {
	c, err := catalogue.Parse([]byte(`provider: {name: P, timezone: Europe/Stockholm}
agencies:
  - id: alpha
    name: Alpha
    phase: run
    maintenance: [{name: move, start: "2026-12-05T20:00:00+01:00", end: "2026-12-06T04:00:00+01:00"}]
`), "c.yaml")
	require.NoError(t, err)
	b, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	msgs := make(chan *nats.Msg, 4)
	sub, err := b.ChanSubscribe("agency.>", msgs)
	require.NoError(t, err)
	defer sub.Unsubscribe()

	e := New(Options{Bus: b, ExternalURL: "http://s"})
	notify := e.notifier(&agencyRules{id: "alpha", agency: c.Agency("alpha")})
	inside := time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC)
	outside := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	notify(context.Background(), "up == 0",
		&rules.Alert{Labels: labels.FromStrings("alertname", "Custom", "agency", "beta"), ActiveAt: inside, FiredAt: inside, ValidUntil: inside.Add(time.Hour)},
		&rules.Alert{Labels: labels.FromStrings("alertname", "Other", "service", "web"), ActiveAt: outside, FiredAt: outside, ResolvedAt: outside.Add(time.Minute)},
	)
	select {
	case m := <-msgs:
		require.Equal(t, "agency.alpha.alerts", m.Subject)
		var got []bus.Alert
		require.NoError(t, json.Unmarshal(m.Data, &got))
		require.Len(t, got, 2)
		require.Equal(t, map[string]string{"alertname": "Custom", "agency": "alpha", "exported_agency": "beta", "maintenance": "true"}, got[0].Labels)
		require.Equal(t, map[string]string{"alertname": "Other", "agency": "alpha", "service": "web"}, got[1].Labels)
		require.True(t, got[1].Resolved(outside.Add(time.Hour)))
		require.False(t, got[0].Resolved(inside))
		require.Contains(t, got[0].GeneratorURL, "http://s/graph?g0.expr=up+%3D%3D+0")
	case <-time.After(5 * time.Second):
		t.Fatal("no alert published")
	}
}
