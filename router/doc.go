// Package router is the only place that decides which agency a batch belongs
// to. It consumes everything collectors publish on ingest.>, resolves the
// agency from the batch's authenticated source (the subject it arrived on)
// and the catalogue — never from a label the sender wrote — applies the
// agency's relabel rules and limits, sets the agency and service labels and
// republishes the batch on agency.<id>.<kind>. An input is acked only after
// its output is stored in JetStream.
package router
