package ticketing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// alert is a notice of an alert occurrence that started at start; a
// resolved one (firing false) ended at end.
func alert(name string, firing bool, start time.Time, kv ...string) bus.Alert {
	return notice(name, firing, start, start, kv...)
}

func notice(name string, firing bool, start, end time.Time, kv ...string) bus.Alert {
	l := map[string]string{"alertname": name, "agency": "alpha", "service": "web", "severity": "critical"}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	a := bus.Alert{Labels: l, Annotations: map[string]string{"summary": name + " on web"}, StartsAt: start}
	if !firing {
		a.EndsAt = end
	}
	return a
}

func target() Target {
	return Target{Agency: "alpha", Service: "web", Tier: "high", Queue: QueueAgency, Company: "ALPHA", Key: "alpha/web/X", StoredKey: "alpha.x", Policy: DefaultPolicy}
}

// step is one alert at a time offset, and what the incident should look
// like after it.
type step struct {
	at       time.Duration
	alert    bus.Alert
	sweep    bool
	change   Change
	state    string
	newID    bool // a different incident than before
	count    int
	flapping bool
	reopened int
	// tombstone: the stored record remembers resolutions, without an incident.
	tombstone bool
}

func TestLifecycle(t *testing.T) {
	// aN(firing, start, end): a notice of instance N's occurrence that
	// started at t0+start (and, if resolved, ended at t0+end).
	a1 := func(firing bool, start time.Duration, end ...time.Duration) bus.Alert {
		e := start
		if len(end) > 0 {
			e = end[0]
		}
		return notice("X", firing, t0.Add(start), t0.Add(e), "instance", "a")
	}
	a2 := func(firing bool, start time.Duration, end ...time.Duration) bus.Alert {
		e := start
		if len(end) > 0 {
			e = end[0]
		}
		return notice("X", firing, t0.Add(start), t0.Add(e), "instance", "b")
	}
	m := time.Minute
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"open, dedup, resolve", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a1(true, 0), change: Touched, state: StateOpen, count: 1},
			{at: 2 * m, alert: a1(false, 0, 2*m), change: Changed, state: StateResolved, count: 1},
			{at: 3 * m, alert: a1(false, 0, 2*m), change: Unchanged, state: StateResolved, count: 1},
		}},
		{"resolved alert without incident leaves a tombstone", []step{
			{at: 0, alert: a1(false, 0), change: Touched, tombstone: true},
		}},
		{"storm: alerts of one key group into one incident", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a2(true, m), change: Changed, state: StateOpen, count: 2},
			{at: 2 * m, alert: a1(false, 0, 2*m), change: Changed, state: StateOpen, count: 2},
			{at: 3 * m, alert: a2(false, m, 3*m), change: Changed, state: StateResolved, count: 2},
		}},
		{"reopen within the window", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a1(false, 0, m), change: Changed, state: StateResolved, count: 1},
			{at: 30 * m, alert: a1(true, 30*m), change: Changed, state: StateOpen, count: 1, reopened: 1},
		}},
		{"new incident after the window", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a1(false, 0, m), change: Changed, state: StateResolved, count: 1},
			{at: 62 * m, alert: a1(true, 62*m), change: Changed, state: StateOpen, newID: true, count: 1},
		}},
		{"late firing notice of a resolved occurrence changes nothing", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a1(false, 0, m), change: Changed, state: StateResolved, count: 1},
			{at: 2 * m, alert: a1(true, 0), change: Unchanged, state: StateResolved, count: 1},
			{at: 90 * m, alert: a1(true, 0), change: Unchanged, state: StateResolved, count: 1},
		}},
		{"resolution delivered before its firing notice", []step{
			{at: m, alert: a1(false, 0, m), change: Touched, tombstone: true},
			{at: 2 * m, alert: a1(true, 0), change: Unchanged, tombstone: true},
			{at: 5 * m, alert: a1(true, 5*m), change: Changed, state: StateOpen, newID: true, count: 1},
		}},
		{"late resolution of an older occurrence keeps the newer open", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a1(false, 0, m), change: Changed, state: StateResolved, count: 1},
			{at: 2 * m, alert: a1(true, 2*m), change: Changed, state: StateOpen, count: 1, reopened: 1},
			{at: 3 * m, alert: a1(false, 0, m), change: Unchanged, state: StateOpen, count: 1, reopened: 1},
		}},
		{"flapping keeps the incident open until quiet", []step{
			{at: 0, alert: a1(true, 0), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: m, alert: a1(false, 0, m), change: Changed, state: StateResolved, count: 1},
			{at: 2 * m, alert: a1(true, 2*m), change: Changed, state: StateOpen, count: 1, reopened: 1},
			// The fourth transition within the hour: flapping, stays open.
			{at: 3 * m, alert: a1(false, 2*m, 3*m), change: Changed, state: StateOpen, count: 1, reopened: 1, flapping: true},
			{at: 4 * m, alert: a1(true, 4*m), change: Changed, state: StateOpen, count: 1, reopened: 1, flapping: true},
			{at: 5 * m, alert: a1(false, 4*m, 5*m), change: Changed, state: StateOpen, count: 1, reopened: 1, flapping: true},
			{at: 30 * m, sweep: true, change: Unchanged, state: StateOpen, count: 1, reopened: 1, flapping: true},
			{at: 64 * m, sweep: true, change: Changed, state: StateResolved, count: 1, reopened: 1},
		}},
		{"alerts that stop being reported expire", []step{
			{at: 0, alert: func() bus.Alert { a := a1(true, 0); a.EndsAt = t0.Add(4 * m); return a }(), change: Changed, state: StateOpen, newID: true, count: 1},
			{at: 3 * m, sweep: true, change: Unchanged, state: StateOpen, count: 1},
			{at: 5 * m, sweep: true, change: Changed, state: StateResolved, count: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cur *Incident
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				var next *Incident
				var ch Change
				if s.sweep {
					next, ch = Sweep(cur, DefaultPolicy, now)
				} else {
					next, ch = Apply(cur, s.alert, target(), now)
				}
				require.Equal(t, s.change, ch, "step %d", i)
				if s.tombstone {
					require.NotNil(t, next, "step %d", i)
					require.Empty(t, next.ID, "step %d: a tombstone is no incident", i)
					cur = next
					continue
				}
				require.Equal(t, s.state, next.State, "step %d", i)
				if cur != nil {
					require.Equal(t, !s.newID, cur.ID == next.ID, "step %d: same incident?", i)
				}
				require.Equal(t, s.count, next.Count, "step %d", i)
				require.Equal(t, s.flapping, next.Flapping, "step %d", i)
				require.Equal(t, s.reopened, next.Reopened, "step %d", i)
				if ch == Changed && cur != nil && cur.ID == next.ID {
					require.Greater(t, len(next.WorkLog), len(cur.WorkLog), "step %d: every state change is in the work log", i)
				}
				cur = next
			}
		})
	}
}

func TestEscalation(t *testing.T) {
	warn := alert("X", true, t0, "severity", "warning", "instance", "a")
	inc, _ := Apply(nil, warn, target(), t0)
	require.Equal(t, "Medium", inc.Priority) // impact 2 (high tier) × urgency 3 (warning)
	crit := alert("X", true, t0, "severity", "critical", "instance", "b")
	inc, ch := Apply(inc, crit, target(), t0.Add(time.Minute))
	require.Equal(t, Changed, ch)
	require.Equal(t, "Critical", inc.Priority)
	require.Contains(t, inc.WorkLog[len(inc.WorkLog)-1].Text, "Escalated from Medium to Critical")
}

func TestPriorityMatrix(t *testing.T) {
	for _, tc := range []struct {
		tier, severity, want string
	}{
		{"critical", "critical", "Critical"},
		{"critical", "warning", "High"},
		{"high", "critical", "Critical"},
		{"high", "warning", "Medium"},
		{"medium", "critical", "High"},
		{"medium", "warning", "Medium"},
		{"low", "critical", "Medium"},
		{"low", "warning", "Low"},
		{"low", "info", "Low"},
		{"critical", "info", "Medium"},
	} {
		require.Equal(t, tc.want, Priority(ImpactOf(tc.tier), UrgencyOf(tc.severity)), "%s × %s", tc.tier, tc.severity)
	}
}

func TestTargetFor(t *testing.T) {
	cat, err := catalogue.Parse([]byte(`provider: {name: Provider IT}
ticketing:
  reopen_window: 2h
  group_by: [region]
  onboarding: {company: Provider IT, assigned_group: Onboarding team}
agencies:
  - id: run
    name: Run agency
    phase: run
    reopen_window: 10m
    remedy: {company: RUN, assigned_group: Drift RUN}
    services:
      - {id: web, name: W, tier: critical}
      - {id: api, name: A, tier: low, remedy: {company: RUN, assigned_group: API team}}
  - {id: build, name: Build agency, phase: build, remedy: {company: BUILD}}
  - {id: plan, name: Plan agency, phase: plan}
`), "c.yaml")
	require.NoError(t, err)
	mk := func(kv ...string) bus.Alert { return alert("X", true, t0, kv...) }

	tg, reason := TargetFor(cat, "run", mk("service", "web", "region", "north"))
	require.Empty(t, reason)
	require.Equal(t, Target{
		Agency: "run", Service: "web", Tier: "critical", Queue: QueueAgency, Company: "RUN", SupportGroup: "Drift RUN",
		Key: `run/web/X{region="north"}`, StoredKey: tg.StoredKey, GroupLabels: map[string]string{"region": "north"},
		Policy: Policy{ReopenWindow: 10 * time.Minute, FlapWindow: time.Hour, FlapThreshold: 4},
	}, tg)
	other, _ := TargetFor(cat, "run", mk("service", "web", "region", "south"))
	require.NotEqual(t, tg.StoredKey, other.StoredKey, "group_by labels are part of the key")
	same, _ := TargetFor(cat, "run", mk("service", "web", "region", "north", "instance", "x"))
	require.Equal(t, tg.StoredKey, same.StoredKey, "other labels are not")

	tg, _ = TargetFor(cat, "run", mk("service", "api"))
	require.Equal(t, "API team", tg.SupportGroup, "per-service Remedy override")
	tg, _ = TargetFor(cat, "build", mk("service", "web"))
	require.Equal(t, QueueOnboarding, tg.Queue)
	require.Equal(t, "Provider IT", tg.Company)
	require.Equal(t, "Onboarding team", tg.SupportGroup)
	require.Equal(t, 2*time.Hour, tg.Policy.ReopenWindow)

	for _, tc := range []struct {
		agency string
		alert  bus.Alert
		reason string
	}{
		{"plan", mk(), "plan_phase"},
		{"ghost", mk(), "unknown_agency"},
		{"run", mk("maintenance", "true"), "maintenance"},
		{"run", bus.Alert{Labels: map[string]string{"agency": "run"}}, "no_alertname"},
	} {
		_, reason := TargetFor(cat, tc.agency, tc.alert)
		require.Equal(t, tc.reason, reason)
	}
}
