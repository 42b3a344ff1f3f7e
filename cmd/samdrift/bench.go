package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/samdrift/samdrift/internal/bench"
)

func registerBench(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	b := app.Command("bench", "Benchmark loads and the side-by-side comparison with Prometheus (make bench).")
	timingTargets = b.Flag("timing-targets", "Exit 1 when a speed or memory target is missed (--no-timing-targets: report it only; lost or duplicated work always fails).").Default("true").Bool()

	loadFlags := func(cmd *kingpin.CmdClause) *bench.IngestLoad {
		l := &bench.IngestLoad{}
		cmd.Flag("series", "Active series, spread evenly over the agencies.").Default("400000").IntVar(&l.Series)
		cmd.Flag("senders", "Concurrent senders (a multiple of the agencies).").Default("4").IntVar(&l.Senders)
		cmd.Flag("batch", "Samples per request.").Default("2000").IntVar(&l.Batch)
		cmd.Flag("duration", "How long to send.").Default("60s").DurationVar(&l.Duration)
		return l
	}

	in := b.Command("ingest", "Push a remote_write load to a running Samdrift (or any remote-write receiver).")
	inLoad := loadFlags(in)
	url := in.Flag("url", "Remote-write endpoint.").Default("http://127.0.0.1:9470/api/v1/push").String()
	tokens := in.Flag("token", "Agency token (repeatable; the series are split over them).").Required().Strings()
	cmds[in.FullCommand()] = func(*slog.Logger) int {
		inLoad.URL, inLoad.Tokens, inLoad.Progress = *url, *tokens, os.Stdout
		res, err := bench.RunIngest(context.Background(), *inLoad)
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift bench ingest:", err)
			return 1
		}
		fmt.Printf("\n%d samples accepted in %s: %.0f samples/s; %d failed requests; request p50 %s p99 %s\n",
			res.Accepted, res.Elapsed.Round(time.Millisecond), res.Rate(), res.Errors,
			res.Quantile(0.5).Round(time.Millisecond), res.Quantile(0.99).Round(time.Millisecond))
		return 0
	}

	cc := b.Command("catalogue", "Print the benchmark catalogue (agencies bench1…, tokens bench-token-1…).")
	ccN := cc.Flag("agencies", "Agencies.").Default("4").Int()
	cmds[cc.FullCommand()] = func(*slog.Logger) int {
		c, _ := bench.Catalogue(*ccN, "")
		fmt.Print(c)
		return 0
	}

	registerAlertBenches(b, cmds)
	registerScaleBench(b, cmds)

	cmp := b.Command("compare", "Run the identical ingest load against Samdrift and Debian's Prometheus on this machine, one after the other, and print both figures and the ratio.")
	cmpLoad := loadFlags(cmp)
	agencies := cmp.Flag("agencies", "Agencies the series are spread over.").Default("4").Int()
	promBin := cmp.Flag("prometheus", "Prometheus binary.").Default("prometheus").String()
	dir := cmp.Flag("dir", "Work directory (default: a temporary one, removed afterwards).").String()
	cmds[cmp.FullCommand()] = func(*slog.Logger) int {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		prom, err := exec.LookPath(*promBin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "samdrift bench compare: %s not found (apt-get install prometheus)\n", *promBin)
			return 1
		}
		wd := *dir
		if wd == "" {
			if wd, err = os.MkdirTemp("", "samdrift-bench-"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(wd)
		}
		res, err := bench.CompareIngest(context.Background(), bench.CompareOptions{
			Samdrift: self, Prometheus: prom, Dir: wd, Load: *cmpLoad, Agencies: *agencies, Progress: os.Stdout,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift bench compare:", err)
			return 1
		}
		printComparison(res, cmpLoad.Series)
		return 0
	}
}

// timingTargets says whether a missed speed or memory target fails the
// command; a benchmark that loses or duplicates work fails regardless.
var timingTargets = new(bool)

// passed is the exit decision of a benchmark: its counts must be right, its
// timing targets met unless they are only reported.
func passed(counts, timing bool) bool { return counts && (timing || !*timingTargets) }

func registerAlertBenches(b *kingpin.CmdClause, cmds map[string]func(*slog.Logger) int) {
	self := func() string {
		s, err := os.Executable()
		if err != nil {
			return "samdrift"
		}
		return s
	}
	workDir := func(dir string) (string, func(), error) {
		if dir != "" {
			return dir, func() {}, nil
		}
		d, err := os.MkdirTemp("", "samdrift-bench-")
		return d, func() { os.RemoveAll(d) }, err
	}

	al := b.Command("alerts", "Alert → incident latency: distinct alerts at a steady rate, each its own incident, into the built-in store and then through the Remedy simulator.")
	alRate := al.Flag("rate", "Alerts per second.").Default("100").Float64()
	alDur := al.Flag("duration", "How long to send.").Default("20s").Duration()
	alAgencies := al.Flag("agencies", "Agencies the alerts are spread over.").Default("10").Int()
	alDir := al.Flag("dir", "Work directory (default: a temporary one).").String()
	cmds[al.FullCommand()] = func(*slog.Logger) int {
		ok := true
		for _, remedy := range []bool{false, true} {
			dir, cleanup, err := workDir(*alDir)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			n := int(*alRate * alDur.Seconds())
			name, target := "built-in store", 250*time.Millisecond
			if remedy {
				name, target = "Remedy simulator", 500*time.Millisecond
				dir = dir + "/remedy"
			}
			fmt.Printf("%s: %d alerts at %.0f/s over %d agencies\n", name, n, *alRate, *alAgencies)
			res, err := bench.RunAlerts(context.Background(), bench.AlertsOptions{
				Samdrift: self(), Dir: dir, Agencies: *alAgencies, Alerts: n, Window: *alDur, PerRequest: 1,
				Remedy: remedy, Progress: os.Stdout,
			})
			cleanup()
			if err != nil {
				fmt.Fprintln(os.Stderr, "samdrift bench alerts:", err)
				return 1
			}
			p99 := res.Quantile(0.99)
			counts := res.Missing == 0 && res.Duplicates == 0
			met := p99 < target && counts
			ok = ok && passed(counts, p99 < target)
			fmt.Printf("  incidents %d of %d, duplicates %d; latency p50 %s p90 %s p99 %s max %s (target p99 < %s) %s; peak RSS %s\n\n",
				res.Incidents, res.Sent, res.Duplicates, res.Quantile(0.5).Round(time.Millisecond), res.Quantile(0.9).Round(time.Millisecond),
				p99.Round(time.Millisecond), res.Quantile(1).Round(time.Millisecond), target, verdict(met), bytesHuman(float64(res.PeakRSS)))
		}
		if !ok {
			return 1
		}
		return 0
	}

	st := b.Command("storm", "Alert storm: 10,000 distinct alerts across 340 agencies within 10 seconds into the rate-limited Remedy simulator; every incident exactly once.")
	stAlerts := st.Flag("alerts", "Alerts.").Default("10000").Int()
	stAgencies := st.Flag("agencies", "Agencies.").Default("340").Int()
	stWindow := st.Flag("window", "Time the alerts arrive in.").Default("10s").Duration()
	stPer := st.Flag("per-request", "Alerts per webhook (Alertmanager groups them).").Default("10").Int()
	stRate := st.Flag("remedy-rate", "The simulator's rate limit, requests per second.").Default("500").Float64()
	stBurst := st.Flag("remedy-burst", "The simulator's burst.").Default("50").Int()
	stClient := st.Flag("client-rate", "Samdrift's own pacing of Remedy requests (ticketing.remedy.max_requests_per_second; 0: none).").Default("450").Float64()
	stDir := st.Flag("dir", "Work directory (default: a temporary one).").String()
	cmds[st.FullCommand()] = func(*slog.Logger) int {
		dir, cleanup, err := workDir(*stDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		fmt.Printf("storm: %d alerts, %d agencies, within %s, %d per webhook; Remedy simulator limited to %.0f requests/s (burst %d), Samdrift paced at %.0f/s\n",
			*stAlerts, *stAgencies, *stWindow, *stPer, *stRate, *stBurst, *stClient)
		res, err := bench.RunAlerts(context.Background(), bench.AlertsOptions{
			Samdrift: self(), Dir: dir, Agencies: *stAgencies, Alerts: *stAlerts, Window: *stWindow, PerRequest: *stPer,
			Remedy: true, RemedyRate: *stRate, RemedyBurst: *stBurst, RemedyClientRate: *stClient, Drain: 10 * time.Minute, Progress: os.Stdout,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift bench storm:", err)
			return 1
		}
		var lo, hi int64
		for i, r := range res.RSS {
			if i == 0 || r < lo {
				lo = r
			}
			hi = max(hi, r)
		}
		once := res.Missing == 0 && res.Duplicates == 0
		fmt.Printf("  alerts sent in %s; incidents %d of %d, missing %d, duplicates %d %s\n", res.SendTime.Round(time.Millisecond),
			res.Incidents, res.Sent, res.Missing, res.Duplicates, verdict(once))
		fmt.Printf("  all incidents in Remedy after %s; most created in one second %d (limit %.0f/s + burst %d); %d requests, %d answered 429\n",
			res.Drained.Round(time.Millisecond), res.RemedyMaxCreatesPer, *stRate, *stBurst, res.RemedyRequests, res.RemedyThrottled)
		fmt.Printf("  resident memory during the storm: %s … %s, peak %s\n", bytesHuman(float64(lo)), bytesHuman(float64(hi)), bytesHuman(float64(res.PeakRSS)))
		if !once {
			return 1
		}
		return 0
	}
}

func registerScaleBench(b *kingpin.CmdClause, cmds map[string]func(*slog.Logger) int) {
	sc := b.Command("scale", "One node at the state's scale: 340 agencies (40 large, 100 medium, 200 small) with 1,000,000 active series, a month of SLA series backfilled; peak memory and the month-to-date SLA panel query latency under the load.")
	o := bench.ScaleOptions{}
	sc.Flag("large", "Large agencies (10 units of series each).").Default("40").IntVar(&o.Large)
	sc.Flag("medium", "Medium agencies (4 units).").Default("100").IntVar(&o.Medium)
	sc.Flag("small", "Small agencies (1 unit).").Default("200").IntVar(&o.Small)
	sc.Flag("series", "Active series in total.").Default("1000000").IntVar(&o.Series)
	sc.Flag("senders", "Concurrent remote-write senders.").Default("4").IntVar(&o.Senders)
	sc.Flag("duration", "How long the load and the queries run.").Default("90s").DurationVar(&o.Duration)
	sc.Flag("query-concurrency", "Concurrent dashboard viewers.").Default("2").IntVar(&o.QueryConcurrency)
	dir := sc.Flag("dir", "Work directory (default: a temporary one).").String()
	cmds[sc.FullCommand()] = func(*slog.Logger) int {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		o.Samdrift, o.Dir, o.Progress = self, *dir, os.Stdout
		if o.Dir == "" {
			if o.Dir, err = os.MkdirTemp("", "samdrift-bench-"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(o.Dir)
		}
		res, err := bench.RunScale(context.Background(), o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift bench scale:", err)
			return 1
		}
		memOK := res.PeakRSS < 6<<30
		p99 := res.Quantile(0.99)
		counts := res.QueryErrors == 0 && res.Queries > 0 && res.FailedRequests == 0
		qOK := p99 < time.Second && counts
		fmt.Printf("\n%d agencies, %d active series, %d SLA samples backfilled; %d samples accepted (%.0f/s), %d failed requests\n",
			res.Agencies, res.Series, res.Backfilled, res.Samples, res.SamplesPerSec, res.FailedRequests)
		fmt.Printf("peak resident memory %s (target < 6 GiB) %s\n", bytesHuman(float64(res.PeakRSS)), verdict(memOK))
		fmt.Printf("month-to-date SLA panel (4 queries) p50 %s p99 %s over %d panel loads, %d errors (target p99 < 1s) %s\n",
			res.Quantile(0.5).Round(time.Millisecond), p99.Round(time.Millisecond), res.Queries, res.QueryErrors, verdict(qOK))
		if !passed(counts, memOK && qOK) {
			return 1
		}
		return 0
	}
}

func printComparison(res []bench.SystemResult, series int) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\taccepted samples/s\tend-to-end samples/s\tpeak RSS\tbytes/series\tCPU s\trequest p50\trequest p99\tfailed requests\t")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%.0f\t%.1f\t%s\t%s\t%d\t\n", r.Name, r.Ingest.Rate(), r.E2ERate(),
			bytesHuman(float64(r.PeakRSS)), float64(r.PeakRSS)/float64(series), r.CPU,
			r.Ingest.Quantile(0.5).Round(time.Millisecond), r.Ingest.Quantile(0.99).Round(time.Millisecond), r.Ingest.Errors)
	}
	tw.Flush()
	if len(res) == 2 && res[1].E2ERate() > 0 && res[1].PeakRSS > 0 {
		tp := res[0].E2ERate() / res[1].E2ERate()
		mem := float64(res[0].PeakRSS) / float64(res[1].PeakRSS)
		fmt.Printf("\nthroughput ratio samdrift/prometheus (end to end): %.2f× (target ≥ 1.30×) %s\n", tp, verdict(tp >= 1.3))
		fmt.Printf("peak memory ratio samdrift/prometheus:            %.2f× (target ≤ 0.75×) %s\n", mem, verdict(mem <= 0.75))
	}
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return strings.ToUpper("not met")
}
