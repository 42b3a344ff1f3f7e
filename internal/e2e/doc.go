// Package e2e holds end-to-end tests: they build and start the real samdrift
// binary (and, where a test needs them, real Prometheus, Alertmanager, NATS
// and Chromium from Debian's packages) through internal/apptest and talk to
// it only over its external surface.
package e2e
