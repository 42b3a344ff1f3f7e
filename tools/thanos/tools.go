//go:build tools

// Package tools pins the Thanos that the engine-backed tests run (Receive
// as a hashring with the agency as tenant, Query with tenancy enforced):
// github.com/thanos-io/thanos v0.42.5, built by make thanos with
// GOTOOLCHAIN=go1.27.3 (it needs Go 1.26.10 or later) and -tags slicelabels
// (without it Receive panics on the first query).
package tools

import _ "github.com/thanos-io/thanos/cmd/thanos"
