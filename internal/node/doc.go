// Package node wires Samdrift's components into one process: the bus
// (embedded NATS by default), the per-agency store, the router, the
// collector and the HTTP surface, run as oklog/run actors with an ordered
// shutdown and catalogue reload on SIGHUP or file change.
package node
