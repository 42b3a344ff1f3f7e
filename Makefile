# Samdrift — make help lists the targets.
SHELL     := bash
GO        ?= go
BIN       := bin/samdrift
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
GOLANGCI  := bin/golangci-lint

# The systems make bench compares Samdrift with, built from their Go modules
# and cached in bin/tools (never committed). Prometheus 3 is
# github.com/prometheus/prometheus v0.316.0 (= 3.16.0), pinned in
# tools/prometheus3; VictoriaMetrics single-node is installed at its tag.
TOOLS     := bin/tools
PROM3     := $(TOOLS)/prometheus3
PROM3_VERSION := 3.16.0
VM        := $(TOOLS)/victoria-metrics
VM_VERSION := v1.151.0
# Thanos, the scale-out engine of the engine-backed mode's test: v0.42.5,
# pinned in tools/thanos with its own replace block; it needs Go 1.26.10 or
# later (this build only fetches go1.27.3) and -tags slicelabels (without it
# Receive panics on the first query).
THANOS    := $(TOOLS)/thanos
THANOS_VERSION := 0.42.5

FUZZTIME  ?= 30s
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Unit tests run with the race detector, but for the packages whose tests
# evaluate rules or count slots over a whole month (single-threaded arithmetic: the race
# detector only makes them slow).
NORACE_PKGS := ./rules ./dashboards ./internal/demo

.PHONY: help build run test test-unit test-e2e test-faults test-isolation fuzz-short bench bench-compare bench-go thanos test-thanos fuzz golden fmt lint tidy-check clean

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/samdrift (a first build on a fresh machine downloads and compiles the dependencies: 6-7 minutes on two cores).
	@if [ ! -x $(BIN) ]; then echo "building $(BIN) with $$($(GO) env GOVERSION): the first build downloads the modules it needs and compiles about 600 packages (6-7 minutes on two cores; later builds take seconds)"; fi
	@set -o pipefail; $(GO) build -v -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/samdrift 2>&1 | \
	  awk '/^go: downloading / {d++; if (d % 25 == 1) printf "  downloading modules (%d so far)\n", d; fflush(); next} \
	       /^[A-Za-z0-9._~\/-]+$$/ {n++; if (n % 100 == 0) {printf "  %d packages compiled\n", n; fflush()}; next} {print} \
	       END {if (d > 0) printf "  %d modules downloaded\n", d; if (n >= 100) printf "  %d packages compiled\n", n}'
	@echo "built $(BIN)"

run: build ## Run the demo (embedded NATS, simulated agencies) on http://127.0.0.1:9470/.
	./$(BIN) demo

test: test-unit test-e2e ## Run every test: unit (with -race) and end-to-end against the real binary and peers.

test-unit: ## Unit and integration tests (race detector on the concurrent packages).
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /internal/e2e$$ $(foreach p,$(NORACE_PKGS),-e '$(subst ./,/,$(p))$$'))
	$(GO) test -count=1 $(NORACE_PKGS)
	$(GO) test -count=1 -run 'Allocations' ./bus

test-e2e: ## End-to-end tests: the real binary, real Prometheus/Alertmanager/NATS/Chromium where installed, in parallel.
	$(GO) test -count=1 -parallel 8 -timeout 20m ./internal/e2e/...

test-faults: build ## Fault suite, long form: 20 SIGKILLs, NATS restart, ticket backend down and slow, disk full (needs root), overload; prints the counts.
	@rm -f fault-report.txt; \
	SAMDRIFT_FAULTS=full SAMDRIFT_FAULT_REPORT=$(CURDIR)/fault-report.txt $(GO) test -count=1 -timeout 30m -v \
	  -run '^Test(FaultSuite|FaultDiskFull|Overload|DataSurvivesKill|NATSOutage|BackendOutage)$$' ./internal/e2e/ ./ticketing/ > fault-test.log 2>&1; rc=$$?; \
	grep -E '^(--- |ok|FAIL)|Error:|Messages:' fault-test.log; echo; cat fault-report.txt 2>/dev/null; \
	[ $$rc = 0 ] || echo "fault suite failed; the whole output is in fault-test.log"; exit $$rc

test-isolation: build ## Isolation suites, long form: one agency reads, writes and floods (40,000 alerts) against another; prints the attempts and the effect count.
	@rm -f $(CURDIR)/isolation-report.txt
	@set -o pipefail; SAMDRIFT_ISOLATION=full SAMDRIFT_ISOLATION_REPORT=$(CURDIR)/isolation-report.txt $(GO) test -count=1 -timeout 20m -v -run '^TestIsolation' ./internal/e2e/ \
	  | grep -E '^(=== RUN|--- |ok|FAIL)|isolation_writes_test.go:[0-9]+: [^ ]'
	@cat $(CURDIR)/isolation-report.txt

# fuzz-short counts executions instead of seconds: with a -fuzztime
# duration, Go 1.26's fuzz coordinator can fail a target with "context
# deadline exceeded" at the deadline having found nothing
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
fuzz-short: ## Every fuzz target for 5,000 executions (the form CI runs).
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x

bench: build $(PROM3) $(VM) ## Benchmarks: Go hot paths; ingest side by side with Prometheus 3, VictoriaMetrics and Debian's Prometheus 2 (steady and churn); alert latency, storm, Remedy deliveries, 340-agency scale (docs/benchmarks.md).
	@command -v prometheus >/dev/null || { echo "installing Debian's prometheus (2.42) for the side-by-side comparison"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /internal/e2e)
	./$(BIN) bench compare --prometheus3 $(PROM3) --victoriametrics $(VM) --repeat $(BENCH_REPEAT)
	./$(BIN) bench alerts
	./$(BIN) bench storm
	./$(BIN) bench deliveries
	./$(BIN) bench scale

BENCH_REPEAT ?= 2

bench-compare: build $(PROM3) $(VM) ## Only the ingest comparison with Prometheus 3, VictoriaMetrics and Debian's Prometheus 2.
	./$(BIN) bench compare --prometheus3 $(PROM3) --victoriametrics $(VM) --repeat $(BENCH_REPEAT)

$(PROM3): tools/prometheus3/go.mod tools/prometheus3/go.sum
	@echo "building Prometheus $(PROM3_VERSION) from its Go module into $(PROM3) (a few minutes the first time)"
	@mkdir -p $(TOOLS)
	cd tools/prometheus3 && $(GO) build -ldflags "-X github.com/prometheus/common/version.Version=$(PROM3_VERSION)" \
	  -o ../../$(PROM3) github.com/prometheus/prometheus/cmd/prometheus

thanos: $(THANOS) ## Build Thanos v0.42.5 from its Go module into bin/tools/thanos (about 3 minutes the first time).

$(THANOS): tools/thanos/go.mod tools/thanos/go.sum
	@echo "building Thanos $(THANOS_VERSION) from its Go module into $(THANOS) (downloads the go1.27.3 toolchain and compiles: a few minutes the first time)"
	@mkdir -p $(TOOLS)
	cd tools/thanos && GOTOOLCHAIN=go1.27.3 $(GO) build -tags slicelabels \
	  -ldflags "-X github.com/prometheus/common/version.Version=$(THANOS_VERSION)" -o ../../$(THANOS) github.com/thanos-io/thanos/cmd/thanos

test-thanos: build $(THANOS) ## The engine-backed whole-state test: 3 NATS, 3 Thanos receivers (replication 2), Thanos Query, Samdrift in 9 processes, 20 agencies, processes killed mid-stream.
	@SAMDRIFT_THANOS=$(CURDIR)/$(THANOS) $(GO) test -count=1 -timeout 15m -v -run '^TestThanos' ./internal/e2e/ > thanos-test.log 2>&1; rc=$$?; \
	grep -E '^(=== RUN|--- |ok|FAIL|PASS)|thanos_test.go:[0-9]+: [^ ]' thanos-test.log; \
	if [ $$rc != 0 ]; then grep -E -A 8 'Error Trace|panic:' thanos-test.log | head -200; echo "(the whole output: thanos-test.log)"; fi; exit $$rc

$(VM):
	@echo "building VictoriaMetrics $(VM_VERSION) single-node from its Go module into $(VM) (a few minutes the first time)"
	@mkdir -p $(TOOLS)
	GOBIN=$(CURDIR)/$(TOOLS) $(GO) install -ldflags "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-$(VM_VERSION)" \
	  github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@$(VM_VERSION)

bench-go: ## Only the Go benchmarks of the hot paths (decode, labelling and limits, TSDB append, incident lifecycle).
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /internal/e2e)

fuzz: ## Run every native fuzz target for FUZZTIME (default 30s) each.
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "--- $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

golden: ## Regenerate golden files (generated rules, dashboards); review the diff before committing.
	$(GO) test ./rules ./dashboards -run TestGolden -update

fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

$(GOLANGCI): tools/lint/go.mod tools/lint/go.sum
	@echo "building $(GOLANGCI) (pinned in tools/lint)"
	cd tools/lint && $(GO) build -o ../../$(GOLANGCI) github.com/golangci/golangci-lint/v2/cmd/golangci-lint

lint: $(GOLANGCI) ## go vet, golangci-lint (errorlint, revive, staticcheck, unused, testifylint, sloglint), gofmt, go mod tidy.
	$(GO) vet ./...
	$(GOLANGCI) run ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(MAKE) --no-print-directory tidy-check

tidy-check:
	@cp go.mod /tmp/samdrift-go.mod.bak && cp go.sum /tmp/samdrift-go.sum.bak
	@$(GO) mod tidy
	@if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum"; git --no-pager diff -- go.mod go.sum | head -20; cp /tmp/samdrift-go.mod.bak go.mod; cp /tmp/samdrift-go.sum.bak go.sum; exit 1; fi

clean: ## Remove build output and the demo's data.
	rm -rf bin samdrift-demo-data
