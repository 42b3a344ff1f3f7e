// Package bus owns Samdrift's NATS JetStream layout: the embedded server,
// the connection, the streams and the subject scheme every component shares,
// and trace-context propagation in message headers.
//
// Subjects:
//
//	ingest.<kind>.<source...>   what the collector received, named by its authenticated source
//	agency.<id>.<kind>          what the router decided belongs to agency <id>
//
// Kinds are "metrics", "alerts" and "events". Sources are
// "scrape.<agency>.<service>" and "probe.<agency>.<service>" for the
// collector's own scrapes and probes, and
// "push.<credential>" for pushes authenticated by a catalogue credential.
package bus
