package ticketing

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/samdrift/samdrift/bus"
)

// Policy is the lifecycle configuration of one agency.
type Policy struct {
	// ReopenWindow: a key that fires again within it after its incident
	// resolved reopens that incident; later, it opens a new one.
	ReopenWindow time.Duration
	// FlapWindow and FlapThreshold: an incident with FlapThreshold
	// open/resolve transitions within FlapWindow is flapping; it stays open
	// until it has been quiet (all alerts resolved) for FlapWindow.
	FlapWindow    time.Duration
	FlapThreshold int
}

// DefaultPolicy is used where the catalogue sets nothing.
var DefaultPolicy = Policy{ReopenWindow: time.Hour, FlapWindow: time.Hour, FlapThreshold: 4}

// Target is where an alert's incident belongs, as the catalogue decides.
type Target struct {
	Agency              string
	Service             string
	Tier                string
	Queue               string
	Company             string
	SupportCompany      string
	SupportOrganization string
	SupportGroup        string
	Key                 string // human form
	StoredKey           string // KV form
	GroupLabels         map[string]string
	Policy              Policy
}

// Events, the LastEvent of an incident.
const (
	EventOpened    = "opened"
	EventUpdated   = "updated"
	EventEscalated = "escalated"
	EventResolved  = "resolved"
	EventReopened  = "reopened"
	EventFlapping  = "flapping"
	// EventDeliveryFailed marks a notice that a ticket backend refused the
	// incident (only notifiers see it).
	EventDeliveryFailed = "delivery_failed"
)

// Change says what Apply did.
type Change int

// Kinds of change.
const (
	Unchanged Change = iota
	Touched          // only bookkeeping (last seen): stored, not delivered
	Changed          // a material change: stored and delivered to the backend
)

// NewID returns a new incident id, such as SD-20261122-3F9A0C1B.
func NewID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "SD-" + now.UTC().Format("20060102") + "-" + strings.ToUpper(hex.EncodeToString(b))
}

// Apply applies one alert to the current incident of its key (nil if there
// is none) and returns the incident to store and what changed. When the key
// fires again after the reopen window, the returned incident is a new one
// with a new id; the old one stays resolved in the backend.
func Apply(cur *Incident, a bus.Alert, t Target, now time.Time) (*Incident, Change) {
	firing := !a.Resolved(now)
	fp := Fingerprint(a.Labels)
	var tomb *Incident
	if cur != nil && cur.ID == "" {
		tomb, cur = cur, nil // a tombstone: resolutions seen without an incident
	}
	if cur == nil || (cur.State == StateResolved && firing && now.Sub(cur.ResolvedAt) > t.Policy.ReopenWindow) {
		prev := tomb
		if prev == nil {
			prev = cur
		}
		if stale(prev, fp, a, firing) {
			return orNil(tomb, cur), Unchanged
		}
		if !firing {
			// Remember the resolution: a late (redelivered, or an HA
			// replica's) firing notice of this occurrence must not open an
			// incident afterwards.
			if tomb == nil {
				tomb = &Incident{Key: t.Key, StateKey: t.StoredKey, Agency: t.Agency, Service: t.Service, Alerts: map[string]*AlertState{}}
			} else {
				tomb = tomb.clone()
			}
			tomb.Alerts[fp] = &AlertState{Labels: a.Labels, StartsAt: a.StartsAt, EndsAt: a.EndsAt, LastSeen: now}
			tomb.LastSeen = now
			return tomb, Touched
		}
		return newIncident(a, t, fp, now), Changed
	}
	if stale(cur, fp, a, firing) {
		return cur, Unchanged
	}
	inc := cur.clone()
	inc.LastSeen = now
	switch {
	case inc.State == StateResolved && firing:
		// Fired again within the reopen window.
		inc.State = StateOpen
		inc.ResolvedAt = time.Time{}
		inc.Reopened++
		inc.addAlert(a, fp, now)
		inc.transition(now, t.Policy)
		inc.log(now, fmt.Sprintf("Reopened: %s fired again within the reopen window (%s).", describeAlert(a), t.Policy.ReopenWindow))
		inc.LastEvent = EventReopened
		inc.escalate(a, now)
		return inc, Changed
	case inc.State == StateResolved:
		return cur, Unchanged
	case firing:
		st := inc.Alerts[fp]
		switch {
		case st == nil:
			inc.addAlert(a, fp, now)
			inc.log(now, fmt.Sprintf("Alert added: %s (%d alerts).", describeAlert(a), inc.Count))
			inc.LastEvent = EventUpdated
			inc.escalate(a, now)
			return inc, Changed
		case !st.Firing:
			st.Firing, st.LastSeen, st.StartsAt, st.EndsAt = true, now, a.StartsAt, a.EndsAt
			inc.log(now, fmt.Sprintf("Alert fired again: %s.", describeAlert(a)))
			inc.LastEvent = EventUpdated
			inc.escalate(a, now)
			return inc, Changed
		}
		st.LastSeen, st.EndsAt = now, a.EndsAt
		if a.StartsAt.After(st.StartsAt) {
			st.StartsAt = a.StartsAt
		}
		return inc, Touched
	default: // a resolved alert of an open incident
		st := inc.Alerts[fp]
		if st == nil || !st.Firing {
			return cur, Unchanged
		}
		st.Firing, st.EndsAt, st.LastSeen = false, a.EndsAt, now
		inc.log(now, fmt.Sprintf("Alert resolved: %s.", describeAlert(a)))
		inc.LastEvent = EventUpdated
		inc.maybeResolve(now, t.Policy)
		return inc, Changed
	}
}

// stale reports whether a notice is older than what the incident already
// knows of the same alert: a notice of an earlier occurrence (it started
// before the one known), or a firing notice of an occurrence already
// resolved. Alert notices can arrive out of order (redelivery after a
// crash, Alertmanager HA replicas); the newer news wins.
func stale(inc *Incident, fp string, a bus.Alert, firing bool) bool {
	if inc == nil {
		return false
	}
	st := inc.Alerts[fp]
	if st == nil || a.StartsAt.IsZero() {
		return false
	}
	if a.StartsAt.Before(st.StartsAt) {
		return true
	}
	return firing && !st.Firing && !st.EndsAt.IsZero() && a.StartsAt.Equal(st.StartsAt)
}

func orNil(tomb, cur *Incident) *Incident {
	if tomb != nil {
		return tomb
	}
	return cur
}

// Sweep applies the passage of time: alerts whose validity ended without a
// resolution are treated as resolved (their source stopped reporting), and
// a flapping incident that has been quiet for the flap window resolves.
func Sweep(cur *Incident, p Policy, now time.Time) (*Incident, Change) {
	if cur == nil || !cur.Open() {
		return cur, Unchanged
	}
	inc := cur.clone()
	changed := false
	fps := make([]string, 0, len(inc.Alerts))
	for fp := range inc.Alerts {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	for _, fp := range fps {
		st := inc.Alerts[fp]
		if st.Firing && !st.EndsAt.IsZero() && st.EndsAt.Before(now) {
			st.Firing = false
			inc.log(now, fmt.Sprintf("Alert expired: %s is no longer reported (valid until %s).", describeLabels(st.Labels), st.EndsAt.UTC().Format(time.RFC3339)))
			changed = true
		}
	}
	if changed {
		inc.maybeResolve(now, p)
	}
	if inc.Open() && inc.Flapping && !inc.anyFiring() && (len(inc.Transitions) == 0 || now.Sub(inc.Transitions[len(inc.Transitions)-1]) >= p.FlapWindow) {
		inc.State, inc.ResolvedAt, inc.Flapping = StateResolved, now, false
		inc.LastEvent = EventResolved
		inc.log(now, fmt.Sprintf("Resolved: quiet for %s after flapping.", p.FlapWindow))
		changed = true
	}
	if !changed {
		return cur, Unchanged
	}
	inc.LastSeen = now
	return inc, Changed
}

func newIncident(a bus.Alert, t Target, fp string, now time.Time) *Incident {
	inc := &Incident{
		ID: NewID(now), Key: t.Key, StateKey: t.StoredKey, Agency: t.Agency, Service: t.Service,
		AlertName: a.Labels["alertname"], GroupLabels: t.GroupLabels,
		Queue: t.Queue, Company: t.Company, SupportCompany: t.SupportCompany,
		SupportOrganization: t.SupportOrganization, SupportGroup: t.SupportGroup,
		LastEvent: EventOpened,
		State:     StateOpen, OpenedAt: now, LastSeen: now,
		Tier: t.Tier, Severity: a.Labels["severity"],
		Labels: a.Labels, Annotations: a.Annotations,
		Alerts: map[string]*AlertState{},
	}
	inc.Impact = ImpactOf(t.Tier)
	inc.Urgency = UrgencyOf(inc.Severity)
	inc.Priority = Priority(inc.Impact, inc.Urgency)
	inc.Summary = a.Annotations["summary"]
	if inc.Summary == "" {
		inc.Summary = fmt.Sprintf("%s on %s/%s", inc.AlertName, t.Agency, t.Service)
	}
	inc.Description = a.Annotations["description"]
	inc.addAlert(a, fp, now)
	inc.transition(now, t.Policy)
	inc.log(now, fmt.Sprintf("Opened: %s (priority %s: impact %d, urgency %d).", describeAlert(a), inc.Priority, inc.Impact, inc.Urgency))
	return inc
}

func (inc *Incident) addAlert(a bus.Alert, fp string, now time.Time) {
	if st := inc.Alerts[fp]; st != nil {
		st.Firing, st.LastSeen, st.EndsAt = true, now, a.EndsAt
		if a.StartsAt.After(st.StartsAt) {
			st.StartsAt = a.StartsAt
		}
		return
	}
	inc.Count++
	if len(inc.Alerts) >= MaxTrackedAlerts {
		if inc.Untracked == 0 {
			inc.log(now, fmt.Sprintf("More than %d alerts: the rest are counted, not tracked one by one.", MaxTrackedAlerts))
		}
		inc.Untracked++
		return
	}
	st := &AlertState{StartsAt: a.StartsAt, EndsAt: a.EndsAt, LastSeen: now, Firing: true}
	if len(inc.Alerts) < MaxAlertLabels {
		st.Labels = a.Labels
	}
	inc.Alerts[fp] = st
}

// escalate raises the urgency (and so the priority) when a more severe alert joins.
func (inc *Incident) escalate(a bus.Alert, now time.Time) {
	u := UrgencyOf(a.Labels["severity"])
	if u >= inc.Urgency {
		return
	}
	old := inc.Priority
	inc.Urgency, inc.Severity = u, a.Labels["severity"]
	inc.Priority = Priority(inc.Impact, inc.Urgency)
	if inc.Priority != old {
		inc.log(now, fmt.Sprintf("Escalated from %s to %s: %s.", old, inc.Priority, describeAlert(a)))
		inc.LastEvent = EventEscalated
	}
}

func (inc *Incident) anyFiring() bool {
	for _, st := range inc.Alerts {
		if st.Firing {
			return true
		}
	}
	return false
}

// maybeResolve resolves the incident once every alert has resolved, unless
// it is flapping.
func (inc *Incident) maybeResolve(now time.Time, p Policy) {
	if inc.anyFiring() || !inc.Open() {
		return
	}
	if inc.Flapping {
		inc.log(now, "All alerts resolved; flapping, so the incident stays open until it has been quiet.")
		return
	}
	inc.transition(now, p)
	if inc.Flapping {
		inc.log(now, fmt.Sprintf("Flapping: %d state changes within %s; the incident stays open until it has been quiet for %s.", len(inc.Transitions), p.FlapWindow, p.FlapWindow))
		inc.LastEvent = EventFlapping
		return
	}
	inc.State, inc.ResolvedAt = StateResolved, now
	inc.LastEvent = EventResolved
	inc.log(now, "Resolved: every alert of the incident has resolved.")
}

// transition records an open/resolve transition and marks the incident
// flapping when there were too many within the flap window.
func (inc *Incident) transition(now time.Time, p Policy) {
	kept := inc.Transitions[:0]
	for _, t := range inc.Transitions {
		if now.Sub(t) < p.FlapWindow {
			kept = append(kept, t)
		}
	}
	inc.Transitions = append(kept, now)
	if p.FlapThreshold > 0 && len(inc.Transitions) >= p.FlapThreshold {
		inc.Flapping = true
	}
}

func (inc *Incident) clone() *Incident {
	c := *inc
	c.Alerts = make(map[string]*AlertState, len(inc.Alerts))
	for k, v := range inc.Alerts {
		s := *v
		c.Alerts[k] = &s
	}
	c.WorkLog = append([]WorkLogEntry(nil), inc.WorkLog...)
	c.Transitions = append([]time.Time(nil), inc.Transitions...)
	return &c
}

func describeAlert(a bus.Alert) string { return describeLabels(a.Labels) }

func describeLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(l["alertname"])
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, l[k])
	}
	b.WriteByte('}')
	return b.String()
}
