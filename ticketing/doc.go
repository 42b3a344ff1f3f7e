// Package ticketing is the multi-customer bridge from alerts to incidents.
// It consumes each agency's alerts (agency.<id>.alerts) with a consumer of
// its own, so that one agency's flood never delays another's, and keeps one
// incident per dedup key (agency, service, alertname and the configured
// grouping labels) in a JetStream key-value bucket updated only by
// compare-and-set. Every change goes to each backend (the built-in store,
// Remedy, notification routes) through a durable JetStream outbox: per
// backend and agency a consumer, lanes that keep one incident's changes in
// order while other incidents proceed, a bound on requests in flight, and a
// gate that, while a backend is down, lets one probe through per backoff.
// An input is acked only once the incident state and its outbox entry are
// stored: a crash anywhere neither loses nor duplicates a ticket. A message
// that cannot be processed goes to the agency's dead letters.
package ticketing
