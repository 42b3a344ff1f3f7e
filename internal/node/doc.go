// Package node wires Samdrift's components into one process, or the subset
// a scale-out process runs: setup (components.go, one function per
// component, in dependency order), the HTTP surface (routes.go: every
// endpoint and who may call it, in one table), and the lifecycle
// (lifecycle.go: the actors and the order they stop in, readiness, named
// reloaders).
package node
