package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/samdrift/samdrift/catalogue"
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

// Process is a system under test.
type Process struct {
	Name string
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	logs *os.File
}

// Start runs a program and waits until url answers 200.
func Start(ctx context.Context, name, logFile, readyURL string, bin string, args ...string) (*Process, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if name != "samdrift" {
		// The peer runs with its own defaults, whatever Go tuning the
		// benchmark's environment sets for Samdrift.
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "GOGC=") && !strings.HasPrefix(e, "GOMEMLIMIT=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{}), logs: lf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start; see %s", name, logFile)
		default:
		}
		if resp, err := http.Get(readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop()
			return nil, fmt.Errorf("%s not ready at %s; see %s", name, readyURL, logFile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PeakRSS is the process's peak resident memory (VmHWM), in bytes.
func (p *Process) PeakRSS() int64 { return procStatus(p.cmd.Process.Pid, "VmHWM:") }

// RSS is its current resident memory, in bytes.
func (p *Process) RSS() int64 { return procStatus(p.cmd.Process.Pid, "VmRSS:") }

func procStatus(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), key) {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 {
				kb, _ := strconv.ParseInt(fs[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// CPUSeconds is the user+system CPU time the process used so far.
func (p *Process) CPUSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fs := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	if len(fs) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fs[11], 64)
	st, _ := strconv.ParseFloat(fs[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// Stop sends SIGTERM and waits (SIGKILL after 30s).
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.logs.Close()
}

// FreeAddr is a loopback address free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// metricSum sums a counter over its series on a /metrics page.
func metricSum(url, name string) (float64, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer bench-ops-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != '{' && l[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
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
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(o.Dir, sys)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		var p *Process
		load := o.Load
		load.Progress = o.Progress
		switch sys {
		case "samdrift":
			cfg := filepath.Join(dir, "catalogue.yaml")
			if err := os.WriteFile(cfg, []byte(cat), 0o600); err != nil {
				return nil, err
			}
			p, err = Start(ctx, sys, filepath.Join(dir, "log"), "http://"+addr+"/-/ready", o.Samdrift,
				"run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--http.addr", addr, "--log.level", "warn")
			load.URL, load.Tokens = "http://"+addr+"/api/v1/push", tokens
		case "prometheus":
			cfg := filepath.Join(dir, "prometheus.yml")
			if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o600); err != nil {
				return nil, err
			}
			p, err = Start(ctx, sys, filepath.Join(dir, "log"), "http://"+addr+"/-/ready", o.Prometheus,
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
			p.Stop()
			return nil, err
		}
		r := SystemResult{Name: sys, Ingest: res, E2E: res.Elapsed}
		if sys == "samdrift" {
			// 2xx means durable and routed; wait until the store has it all.
			deadline := time.Now().Add(5 * time.Minute)
			for {
				n, err := metricSum("http://"+addr+"/metrics", "samdrift_store_appended_samples_total")
				if err == nil && n >= float64(res.Accepted) {
					break
				}
				if time.Now().After(deadline) {
					p.Stop()
					return nil, fmt.Errorf("samdrift stored %v of %d accepted samples within 5 minutes", n, res.Accepted)
				}
				time.Sleep(50 * time.Millisecond)
			}
			r.E2E = time.Since(loadStart)
		}
		r.CPU = p.CPUSeconds() - cpu0
		r.PeakRSS = p.PeakRSS()
		p.Stop()
		out = append(out, r)
	}
	return out, nil
}
