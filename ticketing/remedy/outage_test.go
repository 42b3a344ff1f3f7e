package remedy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/remedy/remedysim"
)

// TestRemedyOutageThroughOutbox: Remedy is down (compressed: seconds for
// minutes) while incidents open and resolve; once it is back every incident
// arrives, once, in its final state, without hammering it meanwhile.
func TestRemedyOutageThroughOutbox(t *testing.T) {
	sim, url := newSim(t, remedysim.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	cat, err := catalogue.Parse([]byte(`provider: {name: Provider IT}
agencies:
  - {id: alpha, name: Alpha, phase: run, remedy: {company: ALPHA, assigned_group: Drift ALPHA}, services: [{id: web, name: W, tier: high}]}
  - {id: beta, name: Beta, phase: run, remedy: {company: BETA, assigned_group: Drift BETA}, services: [{id: web, name: W, tier: low}]}
`), "c.yaml")
	require.NoError(t, err)
	e, err := ticketing.New(ctx, ticketing.Options{Bus: b, Catalogue: catalogue.NewHolder(cat)})
	require.NoError(t, err)
	c := client(url, "samdrift")
	d := ticketing.DeliveryOptions{Name: "remedy", Backend: c, Primary: true, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	err = e.EnsureDelivery(ctx, d)
	require.NoError(t, err)
	go func() { _ = e.RunDelivery(ctx, d) }()

	sim.SetDown(true)
	mk := func(agency string, i int, resolved bool) bus.Alert {
		a := bus.Alert{Labels: map[string]string{"alertname": fmt.Sprintf("A%d", i), "agency": agency, "service": "web", "severity": "critical"}, StartsAt: time.Unix(1700000000, 0)}
		if resolved {
			a.EndsAt = time.Now()
		}
		return a
	}
	for i := range 6 {
		for _, ag := range []string{"alpha", "beta"} {
			require.NoError(t, e.Process(ctx, ag, []bus.Alert{mk(ag, i, false)}))
		}
	}
	for _, ag := range []string{"alpha", "beta"} {
		require.NoError(t, e.Process(ctx, ag, []bus.Alert{mk(ag, 0, true)}))
	}
	// A window in which nothing may reach the down server (a non-event:
	// there is no condition to wait for).
	time.Sleep(3 * time.Second)
	require.Empty(t, sim.Entries(remedysim.FormIncident))
	sim.SetDown(false)
	require.Eventually(t, func() bool {
		es := sim.Entries(remedysim.FormIncident)
		resolved := 0
		for _, e := range es {
			if e["Status"] == "Resolved" {
				resolved++
			}
		}
		return len(es) == 12 && resolved == 2
	}, 30*time.Second, 100*time.Millisecond)
	perKey := map[any]int{}
	for _, e := range sim.Entries(remedysim.FormIncident) {
		perKey[e["Vendor Ticket Number"]]++
		require.Contains(t, []any{"ALPHA", "BETA"}, e["Company"])
	}
	for k, n := range perKey {
		require.Equal(t, 1, n, "ticket %v created %d times", k, n)
	}
}
