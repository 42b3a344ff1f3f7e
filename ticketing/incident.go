package ticketing

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"
)

// Incident states.
const (
	StateOpen     = "open"
	StateResolved = "resolved"
)

// Queues an incident can be in.
const (
	QueueAgency     = "agency"     // the agency's own Remedy company (phase run)
	QueueOnboarding = "onboarding" // the onboarding team's queue (phase build)
)

// Incident is one incident of one agency and one service.
type Incident struct {
	ID  string `json:"id"`
	Key string `json:"key"`
	// StateKey is where the incident's state lives while it is current.
	StateKey  string `json:"state_key"`
	Agency    string `json:"agency"`
	Service   string `json:"service"`
	AlertName string `json:"alertname"`
	// GroupLabels are the grouping labels' values that are part of the key.
	GroupLabels map[string]string `json:"group_labels,omitempty"`

	Queue               string `json:"queue"`
	Company             string `json:"company,omitempty"`
	SupportCompany      string `json:"support_company,omitempty"`
	SupportOrganization string `json:"support_organization,omitempty"`
	SupportGroup        string `json:"support_group,omitempty"`
	// LastEvent is what the newest material change was: opened, updated,
	// escalated, resolved, reopened or flapping (notifications use it).
	LastEvent string `json:"last_event,omitempty"`

	State      string    `json:"state"`
	Flapping   bool      `json:"flapping,omitempty"`
	OpenedAt   time.Time `json:"opened_at"`
	LastSeen   time.Time `json:"last_seen"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	Reopened   int       `json:"reopened,omitempty"`
	// Transitions are recent open/resolve transitions, for flap detection.
	Transitions []time.Time `json:"transitions,omitempty"`

	// Explains, on an incident of the provider's own rules, are the
	// agencies' incidents opened around it (the provider-wide cause of
	// theirs); ExplainedBy, on an agency's incident, is the provider
	// incident open when it opened.
	Explains    []string `json:"explains,omitempty"`
	ExplainedBy string   `json:"explained_by,omitempty"`

	Severity string `json:"severity"`
	Tier     string `json:"tier"`
	Impact   int    `json:"impact"`  // 1 (extensive) … 4 (minor)
	Urgency  int    `json:"urgency"` // 1 (critical) … 4 (low)
	Priority string `json:"priority"`

	Summary     string            `json:"summary"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`

	// Alerts are the alerts grouped into the incident, by fingerprint.
	Alerts map[string]*AlertState `json:"alerts"`
	// Count is the number of distinct alerts the incident has grouped;
	// Untracked those beyond MaxTrackedAlerts, counted only.
	Count     int `json:"count"`
	Untracked int `json:"untracked,omitempty"`

	WorkLog []WorkLogEntry `json:"work_log"`
	// WorkLogOmitted counts entries dropped from the middle of the log to
	// keep it within MaxWorkLog.
	WorkLogOmitted int `json:"work_log_omitted,omitempty"`

	// Version counts changes; Enqueued is the newest version handed to the
	// outbox; Delivered the newest the backend confirmed.
	Version   uint64 `json:"version"`
	Enqueued  uint64 `json:"enqueued"`
	Delivered uint64 `json:"delivered"`
	Ticket    string `json:"ticket,omitempty"`
	// DeliveryError is a permanent delivery failure (the backend refused).
	DeliveryError string `json:"delivery_error,omitempty"`
}

// Bounds on one incident, whatever an agency sends: its state is one
// key-value entry, and one message of alerts must cost a bounded amount.
const (
	// MaxTrackedAlerts are tracked one by one (for resolution); more are
	// counted.
	MaxTrackedAlerts = 5000
	// MaxAlertLabels alerts keep their labels (for people); the rest only
	// their state.
	MaxAlertLabels = 100
	// MaxWorkLog entries are kept: the first and the newest.
	MaxWorkLog = 100
)

// AlertState is one alert of an incident.
type AlertState struct {
	Labels   map[string]string `json:"labels,omitempty"`
	StartsAt time.Time         `json:"starts_at"`
	EndsAt   time.Time         `json:"ends_at,omitzero"`
	LastSeen time.Time         `json:"last_seen"`
	Firing   bool              `json:"firing"`
}

// WorkLogEntry is one line of an incident's work log.
type WorkLogEntry struct {
	At     time.Time `json:"at"`
	Author string    `json:"author"`
	Text   string    `json:"text"`
}

// DedupKey returns the human form of an incident key and its storage form
// (a JetStream KV key: the agency, then a hash).
func DedupKey(agency, service, alertname string, groupBy []string, labels map[string]string) (human, stored string, group map[string]string) {
	var b strings.Builder
	b.WriteString(agency)
	b.WriteByte('/')
	b.WriteString(service)
	b.WriteByte('/')
	b.WriteString(alertname)
	keys := append([]string(nil), groupBy...)
	sort.Strings(keys)
	if len(keys) > 0 {
		group = map[string]string{}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			group[k] = labels[k]
			b.WriteString(k)
			b.WriteString("=\"")
			b.WriteString(labels[k])
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	h := sha256.Sum256([]byte(b.String()))
	return b.String(), agency + "." + hex.EncodeToString(h[:16]), group
}

// Fingerprint identifies one alert by its labels, as Alertmanager does.
func Fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// ImpactOf maps a service tier to ITIL impact (1 = extensive).
func ImpactOf(tier string) int {
	switch tier {
	case "critical":
		return 1
	case "high":
		return 2
	case "low":
		return 4
	}
	return 3
}

// UrgencyOf maps an alert severity to ITIL urgency (1 = critical).
func UrgencyOf(severity string) int {
	switch strings.ToLower(severity) {
	case "critical", "page", "emergency":
		return 1
	case "error", "major", "high":
		return 2
	case "info", "informational", "none", "low":
		return 4
	}
	return 3 // warning and anything unknown
}

// priorityMatrix is the ITIL impact × urgency matrix, with Remedy's
// priority names: rows are impact 1…4, columns urgency 1…4.
var priorityMatrix = [4][4]string{
	{"Critical", "Critical", "High", "Medium"},
	{"Critical", "High", "Medium", "Medium"},
	{"High", "Medium", "Medium", "Low"},
	{"Medium", "Medium", "Low", "Low"},
}

// Priority returns the priority of an impact and urgency (each 1…4).
func Priority(impact, urgency int) string {
	impact = min(max(impact, 1), 4)
	urgency = min(max(urgency, 1), 4)
	return priorityMatrix[impact-1][urgency-1]
}

// Open reports whether the incident is open.
func (inc *Incident) Open() bool { return inc.State == StateOpen }

// log adds a work log entry, keeping the first and the newest MaxWorkLog-1.
func (inc *Incident) log(at time.Time, text string) {
	inc.WorkLog = append(inc.WorkLog, WorkLogEntry{At: at, Author: "samdrift", Text: text})
	if over := len(inc.WorkLog) - MaxWorkLog; over > 0 {
		inc.WorkLog = append(inc.WorkLog[:1], inc.WorkLog[1+over:]...)
		inc.WorkLogOmitted += over
	}
}
