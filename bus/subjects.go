package bus

import (
	"strings"
)

// Kinds of message on the bus.
const (
	KindMetrics = "metrics"
	KindAlerts  = "alerts"
)

// Stream names.
const (
	StreamIngest     = "INGEST"
	StreamMetrics    = "METRICS"
	StreamAlerts     = "ALERTS"
	StreamOutbox     = "OUTBOX"
	StreamDeadLetter = "DEADLETTER"
)

// KV buckets.
const (
	// BucketIncidentState holds the current incident of each dedup key.
	BucketIncidentState = "incident_state"
	// BucketIncidents is the built-in incident store, by incident id.
	BucketIncidents = "incidents"
	// BucketRestatements holds SLA restatements, <agency>.<id>, every
	// version kept (made, withdrawn).
	BucketRestatements = "sla_restatements"
)

// OutboxSubject is where deliveries of an agency's incidents are queued.
func OutboxSubject(agency string) string { return "outbox." + agency }

// Source kinds, the first token of a source.
const (
	SourceScrape = "scrape"
	SourceProbe  = "probe"
	SourcePush   = "push"
	// SourceNATS is an agency publishing to NATS directly from its own
	// account: the account's service import maps its subjects to
	// ingest.<kind>.nats.<agency> (see AgencyAccount).
	SourceNATS = "nats"
)

// IngestSubject is the subject a collector publishes a batch on.
func IngestSubject(kind string, source ...string) string {
	return "ingest." + kind + "." + strings.Join(source, ".")
}

// ParseIngestSubject splits an ingest subject into kind and source tokens.
func ParseIngestSubject(subject string) (kind string, source []string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) < 4 || parts[0] != "ingest" {
		return "", nil, false
	}
	return parts[1], parts[2:], true
}

// AgencySubject is the subject the router republishes an agency's batch on.
func AgencySubject(agency, kind string) string {
	return "agency." + agency + "." + kind
}

// ParseAgencySubject returns the agency and kind of an agency subject.
func ParseAgencySubject(subject string) (agency, kind string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != "agency" {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// AllAgencySubjects is the filter of one kind of every agency.
func AllAgencySubjects(kind string) string { return "agency.*." + kind }
