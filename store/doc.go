// Package store owns the per-agency Prometheus TSDBs: one database per
// agency under the data dir, written from the agency's metrics subject, and
// the Prometheus-compatible query API that answers each caller from the
// agencies its identity may read and from no other.
package store
