// Package router decides which agency a batch of telemetry belongs to: from
// the batch's authenticated source (the subject a collector published it on,
// or the credential a push receiver in the same process authenticated) and
// the catalogue, never from a label the sender wrote. It validates the batch
// (Validator: one check, one set of discard reasons, for every receiver),
// applies the agency's relabel rules and limits, keeps the provider's series
// the provider's (see tenancy), sets the agency and service labels and
// publishes the batch on agency.<id>.<kind>, split to fit the bus.
//
// It runs as the consumer of ingest.> (batches of collectors in other
// processes, and of agencies publishing to NATS directly; an input is acked
// only after its outputs are stored) and in process for the push receivers
// of a collector beside it (IngestMetrics, IngestAlerts: one bus hop, the
// verdict before the sender's 2xx). A message it can never route goes to
// the agency's dead letters.
//
// Alerts of an agency's rules are not pushed: the rule engine publishes them
// on agency.<id>.alerts itself, for the agency whose rules it evaluates (the
// catalogue decides that too, never a label).
package router
