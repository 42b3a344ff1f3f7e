package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apptest"
)

// ScaleOptions configure the one-node scale benchmark: the state's agency
// mix (large, medium and small agencies with 10:4:1 series each) holding
// Series active series in total, kept active by Senders remote-write
// senders for Duration, while the month-to-date SLA panels of random
// agencies are queried.
type ScaleOptions struct {
	Samdrift             string
	Dir                  string
	Large, Medium, Small int
	Series               int
	Senders              int
	Duration             time.Duration
	QueryConcurrency     int
	Progress             io.Writer
	Now                  func() time.Time
	backfillStep         time.Duration
}

// ScaleResult is what the scale benchmark measured.
type ScaleResult struct {
	Agencies       int
	Series         int
	Samples        int64 // accepted during the run
	SamplesPerSec  float64
	FailedRequests int64
	PeakRSS        int64
	Queries        int
	QueryErrors    int
	Latencies      []time.Duration
	Backfilled     int64 // month-to-date SLA samples written before the start
}

// Quantile of the query latencies.
func (r ScaleResult) Quantile(q float64) time.Duration {
	return quantile(r.Latencies, q)
}

type scaleAgency struct {
	id, token string
	series    int
}

// scaleAgencies splits series over the agency mix, 10:4:1.
func scaleAgencies(o ScaleOptions) []scaleAgency {
	units := 10*o.Large + 4*o.Medium + o.Small
	per := o.Series / max(units, 1)
	var out []scaleAgency
	add := func(n, weight int) {
		for range n {
			i := len(out) + 1
			out = append(out, scaleAgency{id: fmt.Sprintf("bench%d", i), token: fmt.Sprintf("bench-token-%d", i), series: weight * per})
		}
	}
	add(o.Large, 10)
	add(o.Medium, 4)
	add(o.Small, 1)
	return out
}

// ScaleCatalogue: every agency with one service under a 99.5 % SLA.
func scaleCatalogue(as []scaleAgency) string {
	var b strings.Builder
	b.WriteString("provider: {name: Benchmark provider, timezone: Europe/Stockholm}\n")
	b.WriteString("defaults:\n  limits:\n    ingestion_rate: 100000000\n    ingestion_burst_size: 100000000\n    max_global_series_per_user: 5000000\n    max_samples_per_request: 100000\n")
	b.WriteString("agencies:\n")
	for _, a := range as {
		fmt.Fprintf(&b, "  - id: %s\n    name: Agency %s\n    phase: run\n    services: [{id: web, name: Web, tier: high, sla: {availability: 99.5}}]\n    credentials: [{name: %s-push, token_sha256: %s}]\n",
			a.id, a.id, a.id, catalogue.HashToken(a.token))
	}
	return b.String()
}

// backfill writes the month so far of the recorded SLA series the panels
// read (one sample a minute, as the rules record them) into each agency's
// store, as a month of running would have left them.
func backfill(dir string, as []scaleAgency, from, to time.Time, step time.Duration) (int64, error) {
	var n int64
	for _, a := range as {
		adir := filepath.Join(dir, "tsdb", a.id)
		if err := os.MkdirAll(adir, 0o750); err != nil {
			return n, err
		}
		w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), adir, to.Sub(from).Milliseconds()+1)
		if err != nil {
			return n, err
		}
		app := w.Appender(context.Background())
		series := []labels.Labels{
			labels.FromStrings("__name__", "sla:availability:mtd", "agency", a.id, "service", "web"),
			labels.FromStrings("__name__", "sla:error_budget_remaining:month", "agency", a.id, "service", "web"),
			labels.FromStrings("__name__", "sla:objective", "agency", a.id, "service", "web"),
		}
		for i, ls := range series {
			for t := from; t.Before(to); t = t.Add(step) {
				v := []float64{0.9991, 0.82, 0.995}[i]
				if _, err := app.Append(0, ls, t.UnixMilli(), v); err != nil {
					return n, err
				}
				n++
			}
		}
		if err := app.Commit(); err != nil {
			return n, err
		}
		if _, err := w.Flush(context.Background()); err != nil {
			return n, err
		}
		if err := w.Close(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// RunScale runs the scale benchmark.
func RunScale(ctx context.Context, o ScaleOptions) (ScaleResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.backfillStep == 0 {
		o.backfillStep = time.Minute
	}
	as := scaleAgencies(o)
	res := ScaleResult{Agencies: len(as)}
	for _, a := range as {
		res.Series += a.series
	}
	loc, err := time.LoadLocation("Europe/Stockholm")
	if err != nil {
		loc = time.UTC
	}
	now := o.Now().In(loc)
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, loc)
	dataDir := filepath.Join(o.Dir, "data")
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "backfilling the month so far (%s) of SLA series for %d agencies\n", monthStart.Format("2006-01-02"), len(as))
	}
	// Up to now, as the rules would have recorded it.
	if res.Backfilled, err = backfill(dataDir, as, monthStart, now, o.backfillStep); err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	cfg := filepath.Join(o.Dir, "catalogue.yaml")
	if err := os.WriteFile(cfg, []byte(scaleCatalogue(as)), 0o600); err != nil {
		return res, err
	}
	addr, err := apptest.FreeAddr()
	if err != nil {
		return res, err
	}
	p, err := start(ctx, "samdrift", filepath.Join(o.Dir, "log"), "http://"+addr+"/-/ready", o.Samdrift,
		"run", "--config", cfg, "--data-dir", dataDir, "--http.addr", addr, "--log.level", "warn")
	if err != nil {
		return res, err
	}
	defer stop(p)
	base := "http://" + addr

	// The requests: every agency's series in requests of 2,000.
	type request struct {
		token  string
		series [][]prompb.Label
	}
	var reqs []request
	for i, a := range as {
		all := agencySeries(i, a.series)
		for len(all) > 0 {
			k := min(2000, len(all))
			reqs = append(reqs, request{a.token, all[:k]})
			all = all[k:]
		}
	}
	lctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var accepted, failed atomic.Int64
	var rounds atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Senders * 2}, Timeout: 60 * time.Second}
	start := time.Now()
	for s := range o.Senders {
		wg.Go(func() {
			var wr prompb.WriteRequest
			var raw, comp []byte
			var body bytes.Buffer
			for round := 0; lctx.Err() == nil; round++ {
				ts := time.Now().UnixMilli()
				for i := s; i < len(reqs) && lctx.Err() == nil; i += o.Senders {
					rq := reqs[i]
					wr.Timeseries = wr.Timeseries[:0]
					for _, ls := range rq.series {
						wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(round), Timestamp: ts}}})
					}
					var err error
					if raw, err = appendMarshal(raw, &wr); err != nil {
						return
					}
					comp = snappy.Encode(comp[:cap(comp)], raw)
					for lctx.Err() == nil {
						code, err := post(lctx, client, base+"/api/v1/push", rq.token, comp, &body)
						if err == nil && code/100 == 2 {
							accepted.Add(int64(len(rq.series)))
							break
						}
						if lctx.Err() == nil {
							failed.Add(1)
							time.Sleep(100 * time.Millisecond)
						}
					}
				}
				if s == 0 {
					rounds.Add(1)
				}
			}
		})
	}

	// Let every series exist once before the queries start.
	for rounds.Load() < 1 && lctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "all %d series active after %s (%s resident); querying the month-to-date SLA panels while the load goes on\n",
			res.Series, time.Since(start).Round(time.Second), mib(float64(p.RSS())))
	}
	// The panel queries, from random agencies, with their own tokens.
	var mu sync.Mutex
	qc := max(o.QueryConcurrency, 1)
	var qwg sync.WaitGroup
	for q := range qc {
		qwg.Go(func() {
			for i := q; lctx.Err() == nil; i += qc {
				a := as[(i*7919)%len(as)]
				t := time.Now()
				err := panelQueries(lctx, client, base, a.token, monthStart, time.Now())
				d := time.Since(t)
				if lctx.Err() != nil {
					return
				}
				mu.Lock()
				res.Queries++
				if err != nil {
					res.QueryErrors++
					if res.QueryErrors == 1 && o.Progress != nil {
						fmt.Fprintf(o.Progress, "query error: %v\n", err)
					}
				} else {
					res.Latencies = append(res.Latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for lctx.Err() == nil {
		select {
		case <-lctx.Done():
		case <-tick.C:
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "  %s: %d samples accepted, %s resident\n", time.Since(start).Round(time.Second), accepted.Load(), mib(float64(p.RSS())))
			}
		}
	}
	wg.Wait()
	qwg.Wait()
	res.Samples, res.FailedRequests = accepted.Load(), failed.Load()
	res.SamplesPerSec = float64(res.Samples) / time.Since(start).Seconds()
	res.PeakRSS = p.PeakRSS()
	if rounds.Load() < 1 {
		return res, fmt.Errorf("not every series was sent once within %s", o.Duration)
	}
	return res, nil
}

// panelQueries runs the agency SLA dashboard's month panels as Grafana
// does: the month-to-date range (1h step) with the objective, and the
// instant figures.
func panelQueries(ctx context.Context, c *http.Client, base, token string, from, to time.Time) error {
	sel := `{service="web"}`
	qs := []url.Values{
		{"query": {"sla:availability:mtd" + sel}, "start": {unix(from)}, "end": {unix(to)}, "step": {"3600"}},
		{"query": {"sla:objective" + sel}, "start": {unix(from)}, "end": {unix(to)}, "step": {"3600"}},
		{"query": {"sla:availability:mtd" + sel}, "time": {unix(to)}},
		{"query": {"sla:error_budget_remaining:month" + sel}, "time": {unix(to)}},
	}
	for _, q := range qs {
		path := "/prometheus/api/v1/query"
		if q.Has("step") {
			path = "/prometheus/api/v1/query_range"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(q.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		var body struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if body.Status != "success" {
			return fmt.Errorf("%s: %s", q.Get("query"), body.Error)
		}
		if len(body.Data.Result) != 1 {
			return fmt.Errorf("%s: %d series, want 1", q.Get("query"), len(body.Data.Result))
		}
	}
	return nil
}

func unix(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }

func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
