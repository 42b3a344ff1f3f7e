package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apptest"
	"github.com/samdrift/samdrift/ticketing/remedy/remedysim"
)

// AlertsOptions configure an alert load against a Samdrift process: Alerts
// distinct alerts (each its own incident) spread over Agencies agencies,
// sent evenly within Window in webhooks of PerRequest alerts.
type AlertsOptions struct {
	Samdrift   string // binary
	Dir        string
	Agencies   int
	Alerts     int
	Window     time.Duration
	PerRequest int
	// Remedy delivers to an in-process Remedy simulator (rate limited to
	// RemedyRate requests/s, burst RemedyBurst; 0: unlimited) instead of
	// the built-in store alone.
	Remedy      bool
	RemedyRate  float64
	RemedyBurst int
	// RemedyClientRate is Samdrift's own pacing (max_requests_per_second).
	RemedyClientRate float64
	// RemedyLatency is the simulator's time to answer each request.
	RemedyLatency time.Duration
	// Drain bounds the wait for every incident after the last alert.
	Drain    time.Duration
	Progress io.Writer
}

// AlertsResult is what an alert load achieved.
type AlertsResult struct {
	Sent       int           // alerts accepted by the webhook
	SendTime   time.Duration // from the first webhook to the last answer
	Incidents  int           // distinct alerts with an incident
	Duplicates int           // incidents beyond the first per alert
	Missing    int           // alerts without an incident after Drain
	Drained    time.Duration // from the first alert to the last incident
	// Latencies from each alert's webhook to its stored incident (the
	// built-in store's write, or the simulator's create).
	Latencies []time.Duration
	PeakRSS   int64
	// RSS samples once a second during the load, for a steady-memory check.
	RSS                 []int64
	RemedyRequests      int
	RemedyThrottled     int // 429 answers
	RemedyMaxCreatesPer int // most incidents created in any one second
}

// Quantile of the latencies.
func (r AlertsResult) Quantile(q float64) time.Duration {
	return quantile(r.Latencies, q)
}

// AlertsCatalogue is a catalogue of n agencies with one service each and a
// Remedy company, plus the ticketing section.
func AlertsCatalogue(n int, ticketingYAML string) (string, []string) {
	var b strings.Builder
	b.WriteString("provider: {name: Benchmark provider, timezone: Europe/Stockholm}\n")
	b.WriteString("roles:\n  ops:\n    credentials: [{name: bench-ops, token_sha256: " + catalogue.HashToken("bench-ops-token") + "}]\n")
	b.WriteString(ticketingYAML)
	b.WriteString("agencies:\n")
	var tokens []string
	for i := 1; i <= n; i++ {
		tok := fmt.Sprintf("bench-token-%d", i)
		tokens = append(tokens, tok)
		fmt.Fprintf(&b, "  - id: bench%d\n    name: Bench agency %d\n    phase: run\n    remedy: {company: BENCH%d, assigned_group: Drift BENCH%d}\n"+
			"    services: [{id: web, name: Web, tier: high}]\n    credentials: [{name: bench%d-push, token_sha256: %s}]\n",
			i, i, i, i, i, catalogue.HashToken(tok))
	}
	return b.String(), tokens
}

var benchAlertName = regexp.MustCompile(`BenchAlert_\d+_\d+`)

// RunAlerts starts Samdrift (and the Remedy simulator), sends the alerts and
// waits until every one has its incident, or Drain passes.
func RunAlerts(ctx context.Context, o AlertsOptions) (AlertsResult, error) {
	var res AlertsResult
	if o.PerRequest <= 0 {
		o.PerRequest = 1
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Minute
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return res, err
	}

	// Incident creation times, by alert name.
	var mu sync.Mutex
	created := map[string][]time.Time{}
	record := func(name string, at time.Time) {
		mu.Lock()
		created[name] = append(created[name], at)
		mu.Unlock()
	}

	tk := ""
	var sim *remedysim.Sim
	if o.Remedy {
		pw := filepath.Join(o.Dir, "remedy-password")
		if err := os.WriteFile(pw, []byte("bench-secret\n"), 0o600); err != nil {
			return res, err
		}
		addr, err := apptest.FreeAddr()
		if err != nil {
			return res, err
		}
		tk = fmt.Sprintf("ticketing:\n  backend: remedy\n  remedy:\n    url: http://%s\n    username: samdrift-integration\n    password_file: %s\n    max_requests_per_second: %g\n", addr, pw, o.RemedyClientRate)
		cat, _ := AlertsCatalogue(o.Agencies, tk)
		parsed, err := catalogue.Parse([]byte(cat), "bench.yaml")
		if err != nil {
			return res, err
		}
		companies := remedysim.Companies(parsed)
		sim = remedysim.New(remedysim.Options{
			Users: remedysim.UsersFor(companies, "samdrift-integration", "bench-secret"), Companies: companies,
			Rate: o.RemedyRate, Burst: o.RemedyBurst, Latency: o.RemedyLatency,
			OnCreate: func(v map[string]any) {
				at := time.Now()
				d, _ := v["Detailed_Decription"].(string)
				if m := benchAlertName.FindString(d); m != "" {
					record(m, at)
				}
			},
		})
		srv := &http.Server{Addr: addr, Handler: sim, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.ListenAndServe() }()
		defer srv.Close()
	}
	cat, tokens := AlertsCatalogue(o.Agencies, tk)
	cfg := filepath.Join(o.Dir, "catalogue.yaml")
	if err := os.WriteFile(cfg, []byte(cat), 0o600); err != nil {
		return res, err
	}
	addr, err := apptest.FreeAddr()
	if err != nil {
		return res, err
	}
	p, err := start(ctx, "samdrift", filepath.Join(o.Dir, "log"), "http://"+addr+"/-/ready", o.Samdrift,
		"run", "--config", cfg, "--data-dir", filepath.Join(o.Dir, "data"), "--http.addr", addr, "--log.level", "warn")
	if err != nil {
		return res, err
	}
	defer stop(p)
	base := "http://" + addr

	// Memory once a second while the load runs.
	memDone := make(chan struct{})
	memStop := make(chan struct{})
	go func() {
		defer close(memDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-memStop:
				return
			case <-t.C:
				res.RSS = append(res.RSS, p.RSS())
			}
		}
	}()

	// The requests, each with its own agency and alerts, sent on schedule.
	type request struct {
		token string
		names []string
	}
	var reqs []request
	perAgency := map[int][]string{}
	for i := range o.Alerts {
		ag := i % o.Agencies
		perAgency[ag] = append(perAgency[ag], fmt.Sprintf("BenchAlert_%d_%d", ag+1, i))
	}
	for ag := range o.Agencies {
		names := perAgency[ag]
		for len(names) > 0 {
			k := min(o.PerRequest, len(names))
			reqs = append(reqs, request{tokens[ag], names[:k]})
			names = names[k:]
		}
	}
	// Interleave agencies over time, as a storm arrives.
	sort.SliceStable(reqs, func(i, j int) bool { return indexIn(reqs[i].names[0]) < indexIn(reqs[j].names[0]) })

	sentAt := make(map[string]time.Time, o.Alerts)
	var sentMu sync.Mutex
	var sent atomic.Int64
	var failed atomic.Int64
	startsAt := time.Now().Add(-time.Minute).UTC()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	interval := o.Window / time.Duration(max(len(reqs), 1))
	first := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, rq := range reqs {
		if d := time.Until(first.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		body := webhookBody(rq.names, startsAt)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for attempt := 0; ; attempt++ {
				at := time.Now()
				code, err := postJSON(ctx, client, base+"/api/v1/alerts", rq.token, body)
				if err == nil && code/100 == 2 {
					sentMu.Lock()
					for _, n := range rq.names {
						sentAt[n] = at
					}
					sentMu.Unlock()
					sent.Add(int64(len(rq.names)))
					return
				}
				failed.Add(1)
				if attempt > 20 || ctx.Err() != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	res.SendTime = time.Since(first)
	res.Sent = int(sent.Load())
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "sent %d alerts in %d webhooks in %s (%d failed attempts); waiting for their incidents\n",
			res.Sent, len(reqs), res.SendTime.Round(time.Millisecond), failed.Load())
	}

	// Wait for the incidents.
	deadline := time.Now().Add(o.Drain)
	lastReport := time.Now()
	for {
		n := 0
		if o.Remedy {
			mu.Lock()
			n = len(created)
			mu.Unlock()
		} else {
			recs, err := listIncidents(ctx, client, base)
			if err == nil {
				mu.Lock()
				clear(created)
				for _, r := range recs {
					if benchAlertName.MatchString(r.AlertName) {
						created[r.AlertName] = append(created[r.AlertName], r.UpdatedAt)
					}
				}
				n = len(created)
				mu.Unlock()
			}
		}
		if n >= res.Sent || time.Now().After(deadline) {
			break
		}
		if o.Progress != nil && time.Since(lastReport) > 5*time.Second {
			fmt.Fprintf(o.Progress, "  %d of %d incidents\n", n, res.Sent)
			lastReport = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Late duplicates would show by now.
	time.Sleep(2 * time.Second)
	if !o.Remedy {
		recs, err := listIncidents(ctx, client, base)
		if err != nil {
			return res, err
		}
		clear(created)
		for _, r := range recs {
			if benchAlertName.MatchString(r.AlertName) {
				created[r.AlertName] = append(created[r.AlertName], r.UpdatedAt)
			}
		}
	}
	close(memStop)
	<-memDone
	res.PeakRSS = p.PeakRSS()

	mu.Lock()
	defer mu.Unlock()
	var last time.Time
	perSecond := map[int64]int{}
	for name, at := range sentAt {
		ts := created[name]
		if len(ts) == 0 {
			res.Missing++
			continue
		}
		res.Incidents++
		res.Duplicates += len(ts) - 1
		c := ts[0]
		for _, t := range ts[1:] {
			if t.Before(c) {
				c = t
			}
		}
		res.Latencies = append(res.Latencies, max(c.Sub(at), 0))
		if c.After(last) {
			last = c
		}
		perSecond[c.Unix()]++
	}
	for _, n := range perSecond {
		res.RemedyMaxCreatesPer = max(res.RemedyMaxCreatesPer, n)
	}
	if !last.IsZero() {
		res.Drained = last.Sub(first)
	}
	if sim != nil {
		res.RemedyRequests, res.RemedyThrottled = sim.Requests(), sim.Throttled()
	}
	if res.Sent != o.Alerts {
		return res, fmt.Errorf("only %d of %d alerts were accepted (see %s)", res.Sent, o.Alerts, filepath.Join(o.Dir, "log"))
	}
	return res, nil
}

// indexIn is the running alert number in a BenchAlert name.
func indexIn(name string) int {
	var ag, i int
	_, _ = fmt.Sscanf(name, "BenchAlert_%d_%d", &ag, &i)
	return i
}

func webhookBody(names []string, startsAt time.Time) []byte {
	type alert struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
	}
	var as []alert
	for _, n := range names {
		as = append(as, alert{Status: "firing", StartsAt: startsAt,
			Labels:      map[string]string{"alertname": n, "service": "web", "severity": "critical"},
			Annotations: map[string]string{"summary": n + " fired"}})
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "samdrift", "alerts": as})
	return b
}

func postJSON(ctx context.Context, c *http.Client, url, token string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

type incidentRecord struct {
	AlertName string    `json:"alertname"`
	UpdatedAt time.Time `json:"updated_at"`
}

// listIncidents reads every incident, page by page.
func listIncidents(ctx context.Context, c *http.Client, base string) ([]incidentRecord, error) {
	var out []incidentRecord
	cursor := ""
	for {
		u := base + "/api/v1/incidents?limit=1000"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer bench-ops-token")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		var env struct {
			Data struct {
				Incidents []incidentRecord `json:"incidents"`
				Next      string           `json:"next"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, errors.New("incidents API: " + resp.Status)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, env.Data.Incidents...)
		if env.Data.Next == "" {
			return out, nil
		}
		cursor = env.Data.Next
	}
}
