package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	b.WriteString("defaults:\n  limits:\n    ingestion_rate: 100000000\n    ingestion_burst_size: 100000000\n    max_global_series_per_user: 5000000\n    max_samples_per_request: 100000\n    max_fetched_series_per_query: 10000000\n    max_samples_per_query: 100000000\n")
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

// A System is one store in the comparison: Samdrift or a peer a provider
// would run instead.
type System struct {
	Name string // samdrift, prometheus3, victoriametrics, prometheus2, thanos
	Bin  string
}

// Peers is what Samdrift is compared with, in the order they run.
var Peers = []string{"prometheus3", "victoriametrics", "prometheus2"}

// SystemResult is one system's figures on one shape.
type SystemResult struct {
	System string
	Shape  string
	Ingest IngestResult
	// E2E runs from the first request until every accepted sample was
	// appended to the system's storage (and so queryable).
	E2E     time.Duration
	PeakRSS int64
	CPU     float64 // CPU seconds from the first request to E2E
	Series  int     // series the shape created
	// Queryable is how many series a count query found afterwards.
	Queryable int
}

// E2ERate is samples per second until everything accepted was stored.
func (r SystemResult) E2ERate() float64 { return float64(r.Ingest.Accepted) / r.E2E.Seconds() }

// CPUPerMillion is CPU seconds per million samples.
func (r SystemResult) CPUPerMillion() float64 { return r.CPU / (float64(r.Ingest.Accepted) / 1e6) }

// BytesPerSeries is peak resident memory over the series created.
func (r SystemResult) BytesPerSeries() float64 { return float64(r.PeakRSS) / float64(r.Series) }

// CompareOptions configure the side-by-side ingest comparison.
type CompareOptions struct {
	Systems []System // Samdrift first; the others as available
	Shapes  []Shape
	Repeat  int // runs of the whole sequence, alternating the systems
	Dir     string
	// ProfileDir, if set, receives Samdrift's CPU profile of each shape's
	// run and its heap profile once everything is stored (the count query
	// is then left out, to keep it out of the CPU profile).
	ProfileDir string
	// SamdriftArgs are added to samdrift run's (--nats.sync-interval 0…).
	SamdriftArgs []string
	Progress     io.Writer
}

// CompareIngest sends each shape's identical, pre-encoded load to every
// system on this machine, one system after the other, each from a fresh
// data directory, and measures each until its storage holds every accepted
// sample.
func CompareIngest(ctx context.Context, o CompareOptions) ([]SystemResult, error) {
	var out []SystemResult
	logf := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format, args...)
		}
	}
	for _, shape := range o.Shapes {
		t0 := time.Now()
		enc, err := Encode(shape)
		if err != nil {
			return nil, err
		}
		logf("%s\n  %d samples encoded in %s (%.1f MiB of request bodies), before any clock starts\n",
			shape, shape.Samples(), time.Since(t0).Round(time.Millisecond), float64(enc.Bytes)/(1<<20))
		for rep := range max(o.Repeat, 1) {
			for _, sys := range o.Systems {
				dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%s-%d", shape.Name, sys.Name, rep))
				prof := ""
				if o.ProfileDir != "" && sys.Name == "samdrift" {
					prof = filepath.Join(o.ProfileDir, fmt.Sprintf("%s-%d", shape.Name, rep))
				}
				r, err := runSystem(ctx, sys, enc, dir, prof, o.SamdriftArgs, logf)
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %w", shape.Name, sys.Name, err)
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func runSystem(ctx context.Context, sys System, enc *Encoded, dir, profile string, extra []string, logf func(string, ...any)) (SystemResult, error) {
	res := SystemResult{System: sys.Name, Shape: enc.Shape.Name, Series: enc.Shape.ActiveSeries()}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return res, err
	}
	addr, err := apptest.FreeAddr()
	if err != nil {
		return res, err
	}
	base := "http://" + addr
	var (
		args          []string
		ready, write  string
		tokens        []string
		appended      func() (float64, error)
		countURL      string
		countQuery    = `count(last_over_time({job="node"}[1h]))`
		authorization string
	)
	switch sys.Name {
	case "samdrift":
		cat, toks := Catalogue(enc.Shape.Agencies, "")
		cfg := filepath.Join(dir, "catalogue.yaml")
		if err := os.WriteFile(cfg, []byte(cat), 0o600); err != nil {
			return res, err
		}
		args = []string{"run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--http.addr", addr, "--log.level", "warn"}
		if profile != "" {
			args = append(args, "--debug.cpu-profile", profile+"-cpu.pprof", "--web.enable-pprof")
		}
		args = append(args, extra...)
		ready, write, tokens = base+"/-/ready", base+"/api/v1/push", toks
		appended = func() (float64, error) { return storedSamples(addr) }
		countURL, authorization = base+"/prometheus/api/v1/query", "bench-ops-token"
	case "prometheus3", "prometheus2":
		cfg := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o600); err != nil {
			return res, err
		}
		args = []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + addr,
			"--web.enable-remote-write-receiver", "--log.level=warn"}
		ready, write = base+"/-/ready", base+"/api/v1/write"
		appended = func() (float64, error) {
			return pageSum(base+"/metrics", "prometheus_tsdb_head_samples_appended_total")
		}
		countURL = base + "/api/v1/query"
	case "thanos":
		// One Thanos Receive, ingesting alone (no hashring, replication 1):
		// a hashring with replication 2 does this work twice. Each agency
		// is its own tenant, as in the engine-backed mode.
		grpc, err := apptest.FreeAddr()
		if err != nil {
			return res, err
		}
		rw, err := apptest.FreeAddr()
		if err != nil {
			return res, err
		}
		cp, err := apptest.FreeAddr()
		if err != nil {
			return res, err
		}
		args = []string{"receive", "--tsdb.path=" + filepath.Join(dir, "data"), "--http-address=" + addr, "--grpc-address=" + grpc,
			"--remote-write.address=" + rw, "--receive.capnproto-address=" + cp, "--receive.local-endpoint=" + grpc,
			`--receive.hashrings=[{"endpoints": ["` + grpc + `"]}]`, `--label=receive_replica="r1"`, "--receive.tenant-header=Authorization", "--log.level=warn"}
		ready, write = base+"/-/ready", "http://"+rw+"/api/v1/receive"
		appended = func() (float64, error) {
			return pageSum(base+"/metrics", "prometheus_tsdb_head_samples_appended_total")
		}
		_, tokens = Catalogue(enc.Shape.Agencies, "")
	case "victoriametrics":
		args = []string{"-storageDataPath=" + filepath.Join(dir, "data"), "-httpListenAddr=" + addr, "-retentionPeriod=1", "-loggerLevel=WARN",
			"-search.latencyOffset=0s"}
		ready, write = base+"/health", base+"/api/v1/write"
		appended = func() (float64, error) { return pageSum(base+"/metrics", "vm_rows_added_to_storage_total") }
		countURL = base + "/api/v1/query"
	default:
		return res, fmt.Errorf("unknown system %q", sys.Name)
	}
	p, err := start(ctx, sys.Name, filepath.Join(dir, "log"), ready, sys.Bin, args...)
	if err != nil {
		return res, err
	}
	defer stop(p)
	logf("  %s (%s):\n", sys.Name, sys.Bin)
	cpu0 := p.CPUSeconds()
	began := time.Now()
	res.Ingest = Send(ctx, write, tokens, enc, progressWriter(logf))
	// Until the storage holds every accepted sample.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, err := appended()
		if err == nil && n >= float64(res.Ingest.Accepted) {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("stored %v of %d accepted samples within 5 minutes of the last answer", n, res.Ingest.Accepted)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.E2E = time.Since(began)
	res.CPU = p.CPUSeconds() - cpu0
	res.PeakRSS = p.PeakRSS()
	if profile != "" {
		if err := fetchTo(base+"/debug/pprof/heap?gc=1", authorization, profile+"-heap.pprof"); err != nil {
			return res, err
		}
		logf("    profiles: %s-cpu.pprof (at exit), %s-heap.pprof\n", profile, profile)
	} else if countURL == "" {
		logf("    (no query API in this process: series not counted)\n")
	} else if res.Queryable, err = countSeries(countURL, authorization, countQuery); err != nil {
		logf("    count query: %v\n", err)
	}
	logf("    %d samples accepted in %s (%.0f/s); all stored after %s (%.0f/s); %.1f CPU s per million samples; peak RSS %.0f MiB; %d series queryable\n",
		res.Ingest.Accepted, res.Ingest.Elapsed.Round(time.Millisecond), res.Ingest.Rate(), res.E2E.Round(time.Millisecond), res.E2ERate(),
		res.CPUPerMillion(), float64(res.PeakRSS)/(1<<20), res.Queryable)
	return res, nil
}

func progressWriter(logf func(string, ...any)) io.Writer {
	return writerFunc(func(b []byte) (int, error) { logf("%s", b); return len(b), nil })
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// pageSum sums a metric over its series on a /metrics page.
func pageSum(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return apptest.MetricSum(string(b), name), nil
}

// fetchTo saves what url answers to file.
func fetchTo(url, token, file string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// countSeries runs an instant count query and returns its value.
func countSeries(queryURL, token, q string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, queryURL+"?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var pr apptest.PromResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		return 0, err
	}
	if pr.Status != "success" {
		return 0, fmt.Errorf("%s: %s", pr.ErrorType, pr.Error)
	}
	var vec struct {
		Result []apptest.Sample `json:"result"`
	}
	if err := json.Unmarshal(pr.Data, &vec); err != nil {
		return 0, err
	}
	if len(vec.Result) == 0 {
		return 0, nil
	}
	return int(vec.Result[0].Float()), nil
}
