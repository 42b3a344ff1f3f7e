// Package rules owns rule evaluation: one Prometheus rule manager per agency,
// reading and writing that agency's TSDB only, running the agency's own rule
// files and the SLA rules generated from its catalogue entry (availability
// per window and per calendar month, multi-window multi-burn-rate alerts,
// outage alerts). It writes the calendar series the SLA rules need
// (service hours, maintenance windows, the current month in the agency's
// time zone) and publishes firing and resolved alerts on agency.<id>.alerts.
package rules
