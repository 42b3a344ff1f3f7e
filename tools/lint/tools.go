//go:build tools

// Package tools pins the linter `make lint` builds (bin/golangci-lint): a
// module of its own, so that its dependencies stay out of Samdrift's.
package tools

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
