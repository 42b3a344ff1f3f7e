// Package collector brings telemetry in: it scrapes every agency's targets
// with Prometheus's scrape manager and runs availability probes, marking
// what it measured itself with the origin label (see tenancy), and it
// receives pushes (remote write 1.0 and 2.0, OTLP, Alertmanager webhooks),
// authenticating the sender and validating each batch at the door. It never
// decides which agency data belongs to: scrapes and probes are published on
// ingest.metrics.<source>, named by where they came from, and pushes are
// handed to the router (in this process) or published on INGEST with the
// sender's credential as source.
package collector
