package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apptest"
)

// Catalogue returns a benchmark catalogue of n agencies ("bench1"…) with
// limits high enough for the load, and their tokens.
func Catalogue(n int, extra string) (string, []string) {
	var b strings.Builder
	b.WriteString("provider: {name: Benchmark provider, timezone: Europe/Stockholm}\n")
	b.WriteString("roles:\n  ops:\n    credentials: [{name: bench-ops, token_sha256: " + catalogue.HashToken("bench-ops-token") + "}]\n")
	b.WriteString("defaults:\n  limits:\n    ingestion_rate: 100000000\n    ingestion_burst_size: 100000000\n    max_global_series_per_user: 5000000\n    max_samples_per_request: 100000\n")
	b.WriteString(extra)
	b.WriteString("agencies:\n")
	var tokens []string
	for i := 1; i <= n; i++ {
		tok := fmt.Sprintf("bench-token-%d", i)
		tokens = append(tokens, tok)
		fmt.Fprintf(&b, "  - id: bench%d\n    name: Bench agency %d\n    phase: run\n    credentials: [{name: bench%d-push, token_sha256: %s}]\n", i, i, i, catalogue.HashToken(tok))
	}
	return b.String(), tokens
}

// start runs a system under test with its output in logFile, and waits
// until readyURL answers 200. Peers run without Samdrift's Go tuning.
func start(ctx context.Context, name, logFile, readyURL, bin string, args ...string) (*apptest.Process, error) {
	return apptest.StartProcess(ctx, name, bin, apptest.Options{
		Ready: readyURL, ReadyTimeout: 2 * time.Minute, LogFile: logFile, BareEnv: name != "samdrift",
	}, args...)
}

// stop ends a system under test: SIGTERM, SIGKILL after 30 s.
func stop(p *apptest.Process) { _ = p.Stop(30 * time.Second) }

// storedSamples is what Samdrift's store has appended so far.
func storedSamples(addr string) (float64, error) {
	page, err := apptest.NewClient(addr, "bench-ops-token").Metrics()
	if err != nil {
		return 0, err
	}
	return apptest.MetricSum(page, "samdrift_store_appended_samples_total"), nil
}

// SystemResult is one system's figures in the comparison.
type SystemResult struct {
	Name    string
	Ingest  IngestResult
	E2E     time.Duration // until every accepted sample was queryable
	PeakRSS int64
	CPU     float64 // CPU seconds during the load
}

// E2ERate is samples per second until everything accepted was stored.
func (r SystemResult) E2ERate() float64 { return float64(r.Ingest.Accepted) / r.E2E.Seconds() }

// CompareOptions configure the side-by-side ingest comparison.
type CompareOptions struct {
	Samdrift, Prometheus string // binaries
	Dir                  string
	Load                 IngestLoad // URL and Tokens are set per system
	Agencies             int
	Progress             io.Writer
}

// CompareIngest runs the identical load against Samdrift and Prometheus,
// one after the other on this machine.
func CompareIngest(ctx context.Context, o CompareOptions) ([]SystemResult, error) {
	var out []SystemResult
	cat, tokens := Catalogue(o.Agencies, "")
	for _, sys := range []string{"samdrift", "prometheus"} {
		addr, err := apptest.FreeAddr()
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(o.Dir, sys)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		var p *apptest.Process
		load := o.Load
		load.Progress = o.Progress
		switch sys {
		case "samdrift":
			cfg := filepath.Join(dir, "catalogue.yaml")
			if err := os.WriteFile(cfg, []byte(cat), 0o600); err != nil {
				return nil, err
			}
			p, err = start(ctx, sys, filepath.Join(dir, "log"), "http://"+addr+"/-/ready", o.Samdrift,
				"run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--http.addr", addr, "--log.level", "warn")
			load.URL, load.Tokens = "http://"+addr+"/api/v1/push", tokens
		case "prometheus":
			cfg := filepath.Join(dir, "prometheus.yml")
			if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o600); err != nil {
				return nil, err
			}
			p, err = start(ctx, sys, filepath.Join(dir, "log"), "http://"+addr+"/-/ready", o.Prometheus,
				"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
				"--web.enable-remote-write-receiver", "--log.level=warn")
			load.URL = "http://" + addr + "/api/v1/write"
			load.Tokens = make([]string, len(tokens)) // Prometheus takes no token; same agency split
		}
		if err != nil {
			return nil, err
		}
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%s (%s): %d series, %d agencies, %d senders, %d samples per request, %s\n",
				sys, addr, load.Series, len(load.Tokens), load.Senders, load.Batch, load.Duration)
		}
		cpu0 := p.CPUSeconds()
		loadStart := time.Now()
		res, err := RunIngest(ctx, load)
		if err != nil {
			stop(p)
			return nil, err
		}
		r := SystemResult{Name: sys, Ingest: res, E2E: res.Elapsed}
		if sys == "samdrift" {
			// 2xx means durable and routed; wait until the store has it all.
			deadline := time.Now().Add(5 * time.Minute)
			for {
				n, err := storedSamples(addr)
				if err == nil && n >= float64(res.Accepted) {
					break
				}
				if time.Now().After(deadline) {
					stop(p)
					return nil, fmt.Errorf("samdrift stored %v of %d accepted samples within 5 minutes", n, res.Accepted)
				}
				time.Sleep(50 * time.Millisecond)
			}
			r.E2E = time.Since(loadStart)
		}
		r.CPU = p.CPUSeconds() - cpu0
		r.PeakRSS = p.PeakRSS()
		stop(p)
		out = append(out, r)
	}
	return out, nil
}
