package demo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing"
)

// History is the demo's past: for every service with an SLA, the outages
// of each day from the start of the previous month until now. Services on
// the demo's outage schedule (Outages) fail daily and miss their
// objective; the others fail a few times a month, briefly.
type History struct {
	From, To time.Time
	down     map[string][]window // agency/service -> outages, sorted
}

type window struct{ start, end time.Time }

// NewHistory draws the demo's past outages, the same for the same now.
func NewHistory(c *catalogue.Catalogue, now time.Time) *History {
	now = now.Truncate(time.Minute)
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, -1)
	h := &History{From: first, To: now, down: map[string][]window{}}
	for _, a := range c.Agencies {
		for _, s := range a.Services {
			key := a.ID + "/" + s.ID
			f := fnv.New64a()
			_, _ = f.Write([]byte(key))
			rng := rand.New(rand.NewPCG(f.Sum64(), uint64(first.Unix())))
			_, flaky := Outages[key]
			// A service that is not on the outage schedule stays within half
			// its error budget each month.
			spent := map[string]time.Duration{}
			allowed := func(t time.Time, d time.Duration) bool {
				if flaky || s.SLA == nil {
					return true
				}
				m := rules.MonthOf(t, a.Location())
				budget := time.Duration((1 - s.SLA.Availability/100) * rules.MonthScopeSeconds(a, s, t) * float64(time.Second))
				if spent[m]+d > budget/2 {
					return false
				}
				spent[m] += d
				return true
			}
			var ws []window
			for day := first; day.Before(now); day = day.Add(24 * time.Hour) {
				n := 0
				switch {
				case flaky:
					n = 1 + rng.IntN(2) // one or two a day, 10–40 minutes
				case rng.IntN(12) == 0:
					n = 1 // one every twelve days or so, 3–15 minutes
				}
				for range n {
					start := day.Add(time.Duration(rng.IntN(24*60)) * time.Minute)
					length := time.Duration(3+rng.IntN(13)) * time.Minute
					if flaky {
						length = time.Duration(10+rng.IntN(31)) * time.Minute
					}
					if start.Before(now) && allowed(start, length) {
						end := start.Add(length)
						if end.After(now) {
							end = now
						}
						ws = append(ws, window{start, end})
					}
				}
			}
			sort.Slice(ws, func(i, j int) bool { return ws[i].start.Before(ws[j].start) })
			h.down[key] = ws
		}
	}
	return h
}

// Up reports whether the service was up at t.
func (h *History) Up(agency, service string, t time.Time) bool {
	ws := h.down[agency+"/"+service]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].end.After(t) })
	return i == len(ws) || t.Before(ws[i].start)
}

// Outages returns the service's past outages.
func (h *History) Outages(agency, service string) [][2]time.Time {
	var out [][2]time.Time
	for _, w := range h.down[agency+"/"+service] {
		out = append(out, [2]time.Time{w.start, w.end})
	}
	return out
}

// BackfillStats says what Backfill wrote.
type BackfillStats struct {
	Agencies, Series, Samples int
}

// Backfill writes the history into each agency's TSDB directory under dir
// (<dir>/<agency>, the store's layout) as one block per agency, before the
// store opens it: the SLA series the generated rules would have recorded —
// the 5-minute slot aggregates of every month (the month figures, reports
// and 30-day windows read them), the 5-minute availability ratio at one
// minute for the last eight days (sparklines), and this month's figure and
// error budget — with slots outside service hours and maintenance windows
// left out, as the rules leave them out. The live rules continue from
// there. An agency whose directory already holds data is left alone.
func Backfill(ctx context.Context, c *catalogue.Catalogue, h *History, dir string, logger *slog.Logger) (BackfillStats, error) {
	var st BackfillStats
	slot := time.Duration(c.Defaults.EvaluationInterval)
	if slot <= 0 {
		return st, errors.New("backfill: no evaluation interval")
	}
	for _, a := range c.Agencies {
		if !a.Phase.AcceptsData() {
			continue
		}
		adir := filepath.Join(dir, a.ID)
		if entries, err := os.ReadDir(adir); err == nil && len(entries) > 0 {
			continue
		}
		if err := os.MkdirAll(adir, 0o750); err != nil {
			return st, err
		}
		w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), adir, h.To.Sub(h.From).Milliseconds()+int64(time.Hour/time.Millisecond))
		if err != nil {
			return st, err
		}
		app := w.Appender(ctx)
		n := 0
		series := map[uint64]struct{}{}
		add := func(ls labels.Labels, t time.Time, v float64) error {
			n++
			series[ls.Hash()] = struct{}{}
			_, err := app.Append(0, ls, t.UnixMilli(), v)
			return err
		}
		loc := a.Location()
		thisMonth := rules.MonthOf(h.To, loc)
		for _, s := range a.Services {
			if s.SLA == nil {
				continue
			}
			base := func(name string, kv ...string) labels.Labels {
				return labels.FromStrings(append([]string{model.MetricNameLabel, name, tenancy.Label, a.ID, "service", s.ID}, kv...)...)
			}
			// Schedules and outages are minute-aligned: each minute's slots
			// share its scope and state. Prefix sums of in-scope and good
			// slots per minute from h.From.
			hours, err := catalogue.ParseServiceHours(s.SLA.ServiceHours)
			if err != nil {
				return st, err
			}
			perMinute := float64(time.Minute / slot)
			minutes := int(h.To.Sub(h.From) / time.Minute)
			inScope, isGood := make([]float64, minutes+1), make([]float64, minutes+1)
			for m := range minutes {
				t := h.From.Add(time.Duration(m) * time.Minute)
				inScope[m+1], isGood[m+1] = inScope[m], isGood[m]
				if hours.Contains(t.In(loc)) && !a.InMaintenance(t) {
					inScope[m+1] += perMinute
					if h.Up(a.ID, s.ID, t) {
						isGood[m+1] += perMinute
					}
				}
			}
			// counts returns the in-scope and good slots of [from, to).
			counts := func(from, to time.Time) (k, g float64) {
				i, j := int(from.Sub(h.From)/time.Minute), int(to.Sub(h.From)/time.Minute)
				i, j = max(0, min(i, minutes)), max(0, min(j, minutes))
				return inScope[j] - inScope[i], isGood[j] - isGood[i]
			}
			// Slot aggregates per 5-minute window, stamped at its end.
			var good, counted float64 // this month's, for its figure
			lastGood, lastCount := map[string]labels.Labels{}, map[string]labels.Labels{}
			for ws := h.From; !ws.Add(5 * time.Minute).After(h.To); ws = ws.Add(5 * time.Minute) {
				k, g := counts(ws, ws.Add(5*time.Minute))
				if k == 0 {
					continue
				}
				month := rules.MonthOf(ws, loc)
				if lastGood[month].IsEmpty() {
					lastGood[month] = base("sla:slot:good_sum5m", "month", month)
					lastCount[month] = base("sla:slot:count5m", "month", month)
				}
				end := ws.Add(5 * time.Minute)
				if err := add(lastGood[month], end, g); err != nil {
					return st, err
				}
				if err := add(lastCount[month], end, k); err != nil {
					return st, err
				}
				if month == thisMonth {
					good, counted = good+g, counted+k
				}
			}
			// The 5-minute ratio each minute of the last eight days.
			ratio := base("sla:availability:ratio_rate5m")
			for t := h.To.Add(-8 * 24 * time.Hour); !t.After(h.To); t = t.Add(time.Minute) {
				if k, g := counts(t.Add(-5*time.Minute), t); k > 0 {
					if err := add(ratio, t, g/k); err != nil {
						return st, err
					}
				}
			}
			// A latency objective: about 600 requests a 5-minute window in
			// scope, 1–2 % of them slower than the threshold (drawn per
			// window, the same for the same history).
			if l := s.SLA.Latency; l != nil {
				f := fnv.New64a()
				_, _ = f.Write([]byte(a.ID + "/" + s.ID + "/latency"))
				rng := rand.New(rand.NewPCG(f.Sum64(), uint64(h.From.Unix())))
				var good, total float64
				for ws := h.From; !ws.Add(5 * time.Minute).After(h.To); ws = ws.Add(5 * time.Minute) {
					if k, _ := counts(ws, ws.Add(5*time.Minute)); k == 0 {
						continue
					}
					n := float64(550 + rng.IntN(100))
					g := n - math.Round(n*(0.01+0.01*rng.Float64()))
					month := rules.MonthOf(ws, loc)
					end := ws.Add(5 * time.Minute)
					if err := add(base("sla:latency:total5m", "month", month), end, n); err != nil {
						return st, err
					}
					if err := add(base("sla:latency:good5m", "month", month), end, g); err != nil {
						return st, err
					}
					if month == thisMonth {
						good, total = good+g, total+n
					}
				}
				for t := h.To.Add(-4 * time.Minute); total > 0 && !t.After(h.To); t = t.Add(time.Minute) {
					if err := add(base("sla:latency:mtd"), t, good/total); err != nil {
						return st, err
					}
				}
			}
			// This month's figure and budget, as the last minutes had them
			// (the live rules write the next within their interval).
			scope := rules.MonthScopeSeconds(a, s, h.To)
			budget := 1 - (counted-good)*slot.Seconds()/((1-s.SLA.Availability/100)*scope)
			if counted > 0 && checkFinite(budget) {
				for t := h.To.Add(-4 * time.Minute); !t.After(h.To); t = t.Add(time.Minute) {
					if err := add(base("sla:availability:mtd"), t, good/counted); err != nil {
						return st, err
					}
					if err := add(base("sla:error_budget_remaining:month"), t, budget); err != nil {
						return st, err
					}
				}
			}
		}
		if n == 0 {
			_ = w.Close()
			continue
		}
		if err := app.Commit(); err != nil {
			_ = w.Close()
			return st, fmt.Errorf("backfill %s: %w", a.ID, err)
		}
		if _, err := w.Flush(ctx); err != nil {
			_ = w.Close()
			return st, fmt.Errorf("backfill %s: %w", a.ID, err)
		}
		if err := w.Close(); err != nil {
			return st, err
		}
		st.Agencies++
		st.Series += len(series)
		st.Samples += n
	}
	return st, nil
}

// checkFinite guards against a budget computed over an empty scope.
func checkFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// PastIncidents are the incidents of the history's most recent outages of
// the services on the outage schedule (the last few of each within 30
// days), resolved, with their ticket numbers, as the incident pipeline
// would have recorded them. Their ids come from the outage, so seeding
// them again changes nothing.
func PastIncidents(c *catalogue.Catalogue, h *History, perService int) []*ticketing.Incident {
	var out []*ticketing.Incident
	keys := make([]string, 0, len(Outages))
	for k := range Outages {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		agency, service, _ := strings.Cut(key, "/")
		a := c.Agency(agency)
		if a == nil || a.Service(service) == nil {
			continue
		}
		svc := a.Service(service)
		ws := h.down[key]
		n := 0
		for i := len(ws) - 1; i >= 0 && n < perService; i-- {
			w := ws[i]
			if h.To.Sub(w.start) > 30*24*time.Hour || !w.end.Before(h.To) {
				continue
			}
			n++
			f := fnv.New32a()
			_, _ = f.Write([]byte(key + w.start.Format(time.RFC3339)))
			id := fmt.Sprintf("SD-%s-%08X", w.start.UTC().Format("20060102"), f.Sum32())
			impact, urgency := ticketing.ImpactOf(svc.Tier), ticketing.UrgencyOf("critical")
			company, queue := a.Remedy.Company, ticketing.QueueAgency
			if company == "" {
				company = a.Name
			}
			if a.Phase == catalogue.PhaseBuild {
				company, queue = c.Ticketing.Onboarding.Company, ticketing.QueueOnboarding
			}
			out = append(out, &ticketing.Incident{
				ID: id, Key: agency + "/" + service + "/ServiceDown", Agency: agency, Service: service, AlertName: "ServiceDown",
				Queue: queue, Company: company, SupportCompany: a.Remedy.SupportCompany,
				SupportOrganization: a.Remedy.SupportOrganization, SupportGroup: a.Remedy.AssignedGroup,
				LastEvent: ticketing.EventResolved, State: ticketing.StateResolved,
				OpenedAt: w.start, LastSeen: w.end, ResolvedAt: w.end,
				Severity: "critical", Tier: svc.Tier, Impact: impact, Urgency: urgency, Priority: ticketing.Priority(impact, urgency),
				Summary: fmt.Sprintf("%s (%s) is down", svc.Name, a.Name),
				Labels:  map[string]string{"alertname": "ServiceDown", "agency": agency, "service": service, "severity": "critical"},
				Count:   1, Version: 1,
				WorkLog: []ticketing.WorkLogEntry{
					{At: w.start, Text: "Opened: ServiceDown fired (demo history)."},
					{At: w.end, Text: fmt.Sprintf("Resolved after %s.", w.end.Sub(w.start).Round(time.Minute))},
				},
			})
		}
	}
	return out
}
