// Package collector brings telemetry in: it scrapes every agency's targets
// with Prometheus's scrape manager and publishes each scrape as a batch on
// ingest.metrics.<source>, named by where the batch came from. It never
// decides which agency data belongs to; the router does, from the source.
package collector
