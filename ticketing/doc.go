// Package ticketing is the multi-customer bridge from alerts to incidents.
// It consumes agency.*.alerts, keeps one incident per dedup key (agency,
// service, alertname and the configured grouping labels) in a JetStream
// key-value bucket updated only by compare-and-set, and hands every change
// to a backend (the built-in store or Remedy) through a durable JetStream
// outbox with retries, backoff and a circuit breaker. An input alert is
// acked only once the incident state and its outbox entry are stored: a
// crash anywhere neither loses nor duplicates a ticket.
package ticketing
