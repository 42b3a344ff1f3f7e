//go:build tools

// Package tools pins the Prometheus 3 server that make bench compares
// Samdrift with (github.com/prometheus/prometheus v0.316.0 is Prometheus 3).
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
