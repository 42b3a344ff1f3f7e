package bus

import "time"

// Alert is an alert as on agency.<id>.alerts: the Alertmanager API v2
// postable alert. A message holds a JSON array of them.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Resolved reports whether the alert had ended at t.
func (a Alert) Resolved(t time.Time) bool {
	return !a.EndsAt.IsZero() && !a.EndsAt.After(t)
}
