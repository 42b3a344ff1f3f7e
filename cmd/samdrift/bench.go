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

	cmp := b.Command("compare", "Send the identical pre-encoded remote-write loads (steady and churn) to Samdrift, Prometheus 3, VictoriaMetrics and Debian's Prometheus 2 (and Thanos Receive with --systems …,thanos) on this machine, one after the other, and print every figure and ratio.")
	systems := cmp.Flag("systems", "Systems to compare, in order (samdrift first).").Default("samdrift,prometheus3,victoriametrics,prometheus2").String()
	prom3 := cmp.Flag("prometheus3", "Prometheus 3 binary (make bench builds bin/tools/prometheus3).").Default("bin/tools/prometheus3").String()
	vm := cmp.Flag("victoriametrics", "VictoriaMetrics single-node binary (make bench builds bin/tools/victoria-metrics).").Default("bin/tools/victoria-metrics").String()
	prom2 := cmp.Flag("prometheus2", "Prometheus 2 binary (Debian's package).").Default("prometheus").String()
	thanos := cmp.Flag("thanos", "Thanos binary (make thanos builds bin/tools/thanos); the system \"thanos\" is one Receive ingesting alone, for sizing the engine-backed mode.").Default("bin/tools/thanos").String()
	shapes := cmp.Flag("shapes", "Load shapes: steady, churn.").Default("steady,churn").String()
	rounds := cmp.Flag("rounds", "Rounds of the steady shape (0: its default, 40).").Int()
	repeat := cmp.Flag("repeat", "Runs of the whole sequence.").Default("1").Int()
	dir := cmp.Flag("dir", "Work directory (default: a temporary one, removed afterwards).").String()
	sdArgs := cmp.Flag("samdrift.arg", "An argument added to samdrift run's (repeatable), such as --samdrift.arg=--nats.sync-interval=0.").Strings()
	profile := cmp.Flag("profile", "Write Samdrift's CPU and heap profiles of each run into this directory (go tool pprof them).").String()
	cmds[cmp.FullCommand()] = func(*slog.Logger) int {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bins := map[string]string{"samdrift": self, "prometheus3": *prom3, "victoriametrics": *vm, "prometheus2": *prom2, "thanos": *thanos}
		var syss []bench.System
		for _, name := range strings.Split(*systems, ",") {
			bin, ok := bins[name]
			if !ok {
				fmt.Fprintf(os.Stderr, "samdrift bench compare: unknown system %q\n", name)
				return 2
			}
			path, err := exec.LookPath(bin)
			if err != nil {
				fmt.Printf("%s: %s not found, left out (make bench builds it)\n", name, bin)
				continue
			}
			syss = append(syss, bench.System{Name: name, Bin: path})
		}
		var shs []bench.Shape
		for _, name := range strings.Split(*shapes, ",") {
			switch name {
			case "steady":
				sh := bench.Steady
				if *rounds > 0 {
					sh.Rounds = *rounds
				}
				shs = append(shs, sh)
			case "churn":
				shs = append(shs, bench.Churn)
			default:
				fmt.Fprintf(os.Stderr, "samdrift bench compare: unknown shape %q\n", name)
				return 2
			}
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
			Systems: syss, Shapes: shs, Repeat: *repeat, Dir: wd, ProfileDir: *profile, SamdriftArgs: *sdArgs, Progress: os.Stdout,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift bench compare:", err)
			return 1
		}
		counts := true
		for _, r := range res {
			counts = counts && r.Ingest.Accepted == int64(shapeOf(shs, r.Shape).Samples())
		}
		if !passed(counts, printComparison(res, shs)) {
			return 1
		}
		return 0
	}
}

func shapeOf(shs []bench.Shape, name string) bench.Shape {
	for _, s := range shs {
		if s.Name == name {
			return s
		}
	}
	return bench.Shape{}
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

	dl := b.Command("deliveries", "Deliveries to a slow Remedy: alerts of two agencies, each its own incident, into a Remedy simulator that answers every request after a latency (a real AR System server: ~100 ms); every ticket exactly once, within the target time.")
	dlAlerts := dl.Flag("alerts", "Alerts.").Default("2000").Int()
	dlAgencies := dl.Flag("agencies", "Agencies.").Default("2").Int()
	dlLatency := dl.Flag("latency", "The simulator's time to answer each request.").Default("100ms").Duration()
	dlWindow := dl.Flag("window", "Time the alerts arrive in.").Default("5s").Duration()
	dlTarget := dl.Flag("target", "Every ticket in Remedy within this time of the first alert.").Default("90s").Duration()
	dlDir := dl.Flag("dir", "Work directory (default: a temporary one).").String()
	cmds[dl.FullCommand()] = func(*slog.Logger) int {
		dir, cleanup, err := workDir(*dlDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		fmt.Printf("deliveries: %d alerts of %d agencies within %s, 10 per webhook, into a Remedy simulator answering each request after %s\n",
			*dlAlerts, *dlAgencies, *dlWindow, *dlLatency)
		res, err := bench.RunAlerts(context.Background(), bench.AlertsOptions{
			Samdrift: self(), Dir: dir, Agencies: *dlAgencies, Alerts: *dlAlerts, Window: *dlWindow, PerRequest: 10,
			Remedy: true, RemedyLatency: *dlLatency, Drain: 10 * time.Minute, Progress: os.Stdout,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "samdrift bench deliveries:", err)
			return 1
		}
		once := res.Missing == 0 && res.Duplicates == 0
		inTime := res.Drained < *dlTarget
		fmt.Printf("  tickets %d of %d, missing %d, duplicates %d %s\n", res.Incidents, res.Sent, res.Missing, res.Duplicates, verdict(once))
		fmt.Printf("  all tickets in Remedy after %s (%.1f tickets/s; target < %s) %s; %d requests; alert → ticket p50 %s p99 %s\n",
			res.Drained.Round(time.Millisecond), float64(res.Incidents)/res.Drained.Seconds(), *dlTarget, verdict(inTime && once), res.RemedyRequests,
			res.Quantile(0.5).Round(time.Millisecond), res.Quantile(0.99).Round(time.Millisecond))
		if !passed(once, inTime) {
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

// printComparison prints each shape's table and Samdrift's ratios to every
// peer (means over repeated runs), and reports whether the targets against
// Prometheus 3 are met: end-to-end rate at least 1.2×, peak memory at most
// 0.8×.
func printComparison(res []bench.SystemResult, shapes []bench.Shape) bool {
	ok := true
	for _, sh := range shapes {
		fmt.Printf("\n%s\n", sh)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "system\taccepted samples/s\tend-to-end samples/s\tCPU s per M samples\tpeak RSS\tbytes/series\trequest p50\trequest p99\trefused requests\tseries queryable\t")
		type sum struct {
			e2e, acc, cpu, rss float64
			n                  int
		}
		means := map[string]*sum{}
		var order []string
		for _, r := range res {
			if r.Shape != sh.Name {
				continue
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%s\t%.0f\t%s\t%s\t%d\t%d\t\n", r.System, r.Ingest.Rate(), r.E2ERate(), r.CPUPerMillion(),
				bytesHuman(float64(r.PeakRSS)), r.BytesPerSeries(),
				r.Ingest.Quantile(0.5).Round(time.Millisecond), r.Ingest.Quantile(0.99).Round(time.Millisecond), r.Ingest.Errors, r.Queryable)
			m := means[r.System]
			if m == nil {
				m = &sum{}
				means[r.System] = m
				order = append(order, r.System)
			}
			m.e2e += r.E2ERate()
			m.acc += r.Ingest.Rate()
			m.cpu += r.CPUPerMillion()
			m.rss += float64(r.PeakRSS)
			m.n++
		}
		_ = tw.Flush()
		sd := means["samdrift"]
		if sd == nil {
			continue
		}
		for _, name := range order {
			p := means[name]
			if name == "samdrift" || p.e2e == 0 || p.rss == 0 {
				continue
			}
			tp, acc := sd.e2e/p.e2e, sd.acc/p.acc
			mem := (sd.rss / float64(sd.n)) / (p.rss / float64(p.n))
			cpu := (sd.cpu / float64(sd.n)) / (p.cpu / float64(p.n))
			line := fmt.Sprintf("samdrift/%s: end to end %.2f×, accepted %.2f×, peak memory %.2f×, CPU per sample %.2f×", name, tp, acc, mem, cpu)
			if name == "prometheus3" {
				met := tp >= 1.2 && mem <= 0.8
				ok = ok && met
				line += fmt.Sprintf(" (targets: ≥ 1.20× end to end, ≤ 0.80× memory) %s", verdict(met))
			}
			fmt.Println(line)
		}
	}
	return ok
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return strings.ToUpper("not met")
}
