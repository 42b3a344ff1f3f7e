package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// Names of the calendar series the SLA rules read; the calendar writes them.
const (
	seriesMonth      = "samdrift_sla_month"
	seriesInScope    = "samdrift_sla_in_scope"
	seriesScopeSecs  = "samdrift_sla_month_scope_seconds"
	seriesMaint      = "samdrift_maintenance"
	slotGroup        = "sla-slots"
	aggregateWindow  = 5 * time.Minute
	monthRange       = "31d"
	defaultOutageFor = time.Minute
	presenceHorizon  = "1h"
)

// Window is one SLA window with the series it is computed from.
type Window struct {
	Name string // as in the record name: 5m, 30m, 1h, …
	// FromSlots: computed from every slot; otherwise from the 5-minute
	// aggregates, which is cheap for long windows.
	FromSlots bool
}

// Windows are the availability windows the generator records.
var Windows = []Window{
	{"5m", true}, {"30m", true}, {"1h", true}, {"2h", false},
	{"6h", false}, {"1d", false}, {"3d", false}, {"30d", false},
}

// Burn is one multi-window burn-rate condition (Google SRE workbook).
type Burn struct {
	Factor      float64
	Long, Short string
}

// Page and Ticket are the burn-rate conditions of the paging and the
// ticketing alert.
var (
	Page   = []Burn{{14.4, "1h", "5m"}, {6, "6h", "30m"}}
	Ticket = []Burn{{3, "1d", "2h"}, {1, "3d", "6h"}}
)

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// source is where a service's availability is measured: the provider's own
// probes and scrapes only (their origin label), never what an agency sends.
type source struct {
	metric    string        // probe_success or up, for people
	selector  string        // probe_success{service="x",samdrift_origin="probe"} or up{service="x",samdrift_origin="scrape"}
	aggregate string        // min: every probe must succeed; max: one target up is enough
	fresh     time.Duration // how old the newest sample may be before the slot counts as down
}

func serviceSource(c *catalogue.Catalogue, svc *catalogue.Service) (source, bool) {
	if specs := probeTimings(c, svc); len(specs) > 0 {
		var fresh time.Duration
		for _, s := range specs {
			fresh = max(fresh, s)
		}
		return source{"probe_success", fmt.Sprintf(`probe_success{service=%q,%s=%q}`, svc.ID, tenancy.OriginLabel, tenancy.OriginProbe), "min", fresh}, true
	}
	if len(svc.Scrape) > 0 {
		var fresh time.Duration
		for _, sc := range svc.Scrape {
			fresh = max(fresh, c.ScrapeInterval(sc)+c.ScrapeTimeout(sc))
		}
		return source{"up", fmt.Sprintf(`up{service=%q,%s=%q}`, svc.ID, tenancy.OriginLabel, tenancy.OriginScrape), "max", fresh}, true
	}
	return source{}, false
}

// probeTimings returns interval+timeout of each probe of the service.
func probeTimings(c *catalogue.Catalogue, svc *catalogue.Service) []time.Duration {
	var out []time.Duration
	for _, pr := range svc.Probes {
		iv := time.Duration(pr.Interval)
		if iv == 0 {
			iv = time.Duration(c.Defaults.ScrapeInterval)
		}
		to := time.Duration(pr.Timeout)
		if to == 0 {
			to = min(10*time.Second, iv)
		}
		out = append(out, iv+to)
	}
	return out
}

func promDuration(d time.Duration) string { return model.Duration(d).String() }

// GenerateSLA returns the generated rule file of an agency, or nil if it
// has nothing to measure. The rules are documented in docs/sla.md.
func GenerateSLA(c *catalogue.Catalogue, a *catalogue.Agency, externalURL string) ([]byte, error) {
	eval := time.Duration(c.Defaults.EvaluationInterval)
	evalSecs := strconv.FormatFloat(eval.Seconds(), 'f', -1, 64)
	curMonth := fmt.Sprintf("topk(1, timestamp(%s))", seriesMonth)

	var slots, alerts, latency5m, latencyObj []rule
	hasSLA := false
	for _, svc := range a.Services {
		src, ok := serviceSource(c, svc)
		if !ok {
			continue
		}
		base := map[string]string{"agency": a.ID, "service": svc.ID}
		up := fmt.Sprintf("%s(last_over_time(%s[%s]))", src.aggregate, src.selector, promDuration(src.fresh))
		if svc.SLA != nil {
			hasSLA = true
			// One slot per evaluation: 1 when the service is up, 0 when it
			// is down or its newest sample is older than an interval (a
			// missing probe counts as down), absent outside service hours
			// and maintenance, and absent when the service has had no sample
			// at all for an hour (it is not monitored yet, or Samdrift was
			// not running). It carries the calendar month it falls in.
			slots = append(slots,
				rule{
					Record: "sla:slot:good",
					Expr: fmt.Sprintf("(\n  (%s or 0 * count(present_over_time(%s[%s])))\n  * on() group_left(month) (%s ^ 0)\n)\nand on() (%s{service=%q} == 1)",
						up, src.selector, presenceHorizon, curMonth, seriesInScope, svc.ID),
					Labels: base,
				},
				rule{
					Record: "sla:objective",
					Expr:   "vector(" + strconv.FormatFloat(svc.SLA.Availability/100, 'f', -1, 64) + ")",
					Labels: map[string]string{"agency": a.ID, "service": svc.ID, "tier": svc.Tier},
				})
		}
		if svc.SLA != nil && svc.SLA.Latency != nil {
			agg, obj := latencyRules(a, svc, curMonth)
			latency5m, latencyObj = append(latency5m, agg...), append(latencyObj, obj...)
		}
		forDur := defaultOutageFor
		if svc.SLA != nil && svc.SLA.For != 0 {
			forDur = time.Duration(svc.SLA.For)
		}
		alerts = append(alerts, rule{
			Alert: "ServiceDown",
			Expr:  fmt.Sprintf("(%s or vector(0)) == 0", up),
			For:   promDuration(forDur),
			Labels: map[string]string{
				"agency": a.ID, "service": svc.ID, "severity": "critical", "tier": svc.Tier,
			},
			Annotations: map[string]string{
				"summary":     fmt.Sprintf("%s (%s) is down", svc.Name, a.Name),
				"description": fmt.Sprintf("%s of %s has not answered its checks (%s) for %s.", svc.Name, a.Name, src.metric, promDuration(forDur)),
				"runbook_url": externalURL + "/runbooks#servicedown",
				"dashboard":   fmt.Sprintf("%s/agency/%s#%s", externalURL, a.ID, svc.ID),
			},
		})
	}
	if len(slots) == 0 && len(alerts) == 0 {
		return nil, nil
	}
	f := ruleFile{}
	if hasSLA {
		f.Groups = append(f.Groups,
			ruleGroup{Name: slotGroup, Interval: promDuration(eval), Rules: slots},
			ruleGroup{Name: "sla-aggregates", Interval: promDuration(aggregateWindow), Rules: []rule{
				// A minute behind: every slot of the window has been written,
				// however the groups' evaluations interleave. Consecutive
				// evaluations are exactly 5m apart, so the windows tile.
				{Record: "sla:slot:good_sum5m", Expr: "sum by (agency, service, month) (sum_over_time(sla:slot:good[5m] offset 1m))"},
				{Record: "sla:slot:count5m", Expr: "sum by (agency, service, month) (count_over_time(sla:slot:good[5m] offset 1m))"},
			}},
			ruleGroup{Name: "sla-windows", Interval: promDuration(eval), Rules: windowRules()},
			ruleGroup{Name: "sla-month", Interval: "1m", Rules: []rule{
				{
					Record: "sla:availability:mtd",
					Expr: fmt.Sprintf("sum by (agency, service) (sum_over_time(sla:slot:good_sum5m[%s]) and on(month) %s)\n/\nsum by (agency, service) (sum_over_time(sla:slot:count5m[%s]) and on(month) %s)",
						monthRange, curMonth, monthRange, curMonth),
				},
				{
					// Bad time so far against the whole month's budget: the
					// in-scope seconds of the month times (1 - objective).
					Record: "sla:error_budget_remaining:month",
					Expr: fmt.Sprintf("1 - (\n  (\n    sum by (agency, service) (sum_over_time(sla:slot:count5m[%s]) and on(month) %s)\n    - sum by (agency, service) (sum_over_time(sla:slot:good_sum5m[%s]) and on(month) %s)\n  ) * %s\n)\n/ on(agency, service) ((1 - sla:objective) * on(agency, service) group_left() max by (agency, service) (%s))",
						monthRange, curMonth, monthRange, curMonth, evalSecs, seriesScopeSecs),
				},
			}},
		)
		alerts = append(burnAlert("SLAErrorBudgetBurnFast", "critical", Page, externalURL, a),
			append(burnAlert("SLAErrorBudgetBurnSlow", "warning", Ticket, externalURL, a), alerts...)...)
	}
	if len(latency5m) > 0 {
		f.Groups = append(f.Groups,
			ruleGroup{Name: "sla-latency", Interval: promDuration(eval), Rules: latencyObj},
			ruleGroup{Name: "sla-latency-aggregates", Interval: promDuration(aggregateWindow), Rules: latency5m},
			ruleGroup{Name: "sla-latency-windows", Interval: promDuration(eval), Rules: latencyWindowRules()},
			ruleGroup{Name: "sla-latency-month", Interval: "1m", Rules: []rule{{
				Record: "sla:latency:mtd",
				Expr: fmt.Sprintf("sum by (agency, service) (sum_over_time(sla:latency:good5m[%s]) and on(month) %s)\n/\nsum by (agency, service) (sum_over_time(sla:latency:total5m[%s]) and on(month) %s)",
					monthRange, curMonth, monthRange, curMonth),
			}}},
		)
		alerts = append(burnAlertOf("SLALatencyBudgetBurnFast", "critical", Page, externalURL, a, latencyPrefix, "sla:latency:objective", "answering slowly"),
			append(burnAlertOf("SLALatencyBudgetBurnSlow", "warning", Ticket, externalURL, a, latencyPrefix, "sla:latency:objective", "answering slowly"), alerts...)...)
	}
	f.Groups = append(f.Groups, ruleGroup{Name: "sla-alerts", Interval: promDuration(eval), Rules: alerts})
	out, err := yaml.Marshal(f)
	if err != nil {
		return nil, err
	}
	header := fmt.Sprintf("# Generated by Samdrift from the catalogue for agency %q (%s). Do not edit.\n", a.ID, a.Name)
	return append([]byte(header), out...), nil
}

const latencyPrefix = "sla:latency"

// latencyCounts returns PromQL for the requests of a service's latency
// histogram over a window: all of them, and those within the threshold.
// A native histogram answers through histogram_count and
// histogram_fraction; a classic one through its _count and the _bucket
// whose le is the threshold (written "0.25" or "0.250", "1" or "1.0").
func latencyCounts(svc *catalogue.Service, window, offset string) (total, good string) {
	l := svc.SLA.Latency
	sel := fmt.Sprintf("{service=%q}", svc.ID)
	th := strconv.FormatFloat(l.Threshold, 'f', -1, 64)
	// A regular expression inside a PromQL string: its backslashes doubled.
	le := strings.ReplaceAll(regexp.QuoteMeta(th), `\`, `\\`)
	if strings.Contains(th, ".") {
		le += "0*"
	} else {
		le += `(\\.0*)?`
	}
	native := fmt.Sprintf("sum by (service) (increase(%s%s[%s]%s))", l.Histogram, sel, window, offset)
	total = fmt.Sprintf("(histogram_count(%s) or sum by (service) (increase(%s_count%s[%s]%s)))", native, l.Histogram, sel, window, offset)
	good = fmt.Sprintf("(histogram_fraction(0, %s, %s) * histogram_count(%s) or sum by (service) (increase(%s_bucket{service=%q,le=~\"%s\"}[%s]%s)))",
		th, native, native, l.Histogram, svc.ID, le, window, offset)
	return total, good
}

// latencyRules are a service's latency objective and its 5-minute
// aggregates: requests and requests within the threshold, in service
// hours outside maintenance, labelled with the calendar month.
func latencyRules(a *catalogue.Agency, svc *catalogue.Service, curMonth string) (agg, obj []rule) {
	l := svc.SLA.Latency
	labels := map[string]string{"agency": a.ID, "service": svc.ID}
	scoped := func(expr string) string {
		return fmt.Sprintf("(\n  %s\n  * on() group_left(month) (%s ^ 0)\n)\nand on() (%s{service=%q} == 1)", expr, curMonth, seriesInScope, svc.ID)
	}
	total, good := latencyCounts(svc, "5m", " offset 1m")
	agg = []rule{
		{Record: "sla:latency:total5m", Expr: scoped("sum by (service) " + total), Labels: labels},
		{Record: "sla:latency:good5m", Expr: scoped("sum by (service) " + good), Labels: labels},
	}
	obj = []rule{
		{Record: "sla:latency:objective", Expr: "vector(" + strconv.FormatFloat(l.Objective/100, 'f', -1, 64) + ")",
			Labels: map[string]string{"agency": a.ID, "service": svc.ID, "tier": svc.Tier}},
		{Record: "sla:latency:threshold_seconds", Expr: "vector(" + strconv.FormatFloat(l.Threshold, 'f', -1, 64) + ")", Labels: labels},
	}
	for _, w := range Windows {
		if !w.FromSlots {
			continue
		}
		t, g := latencyCounts(svc, w.Name, "")
		obj = append(obj, rule{Record: "sla:latency:ratio_rate" + w.Name, Expr: fmt.Sprintf("sum by (service) %s\n/\nsum by (service) %s", g, t), Labels: labels})
	}
	return agg, obj
}

// latencyWindowRules are the long latency windows, from the aggregates.
func latencyWindowRules() []rule {
	var out []rule
	for _, w := range Windows {
		if w.FromSlots {
			continue
		}
		out = append(out, rule{Record: "sla:latency:ratio_rate" + w.Name,
			Expr: fmt.Sprintf("sum by (agency, service) (sum_over_time(sla:latency:good5m[%s]))\n/\nsum by (agency, service) (sum_over_time(sla:latency:total5m[%s]))", w.Name, w.Name)})
	}
	return out
}

func windowRules() []rule {
	var out []rule
	for _, w := range Windows {
		var expr string
		if w.FromSlots {
			expr = fmt.Sprintf("sum by (agency, service) (sum_over_time(sla:slot:good[%s]))\n/\nsum by (agency, service) (count_over_time(sla:slot:good[%s]))", w.Name, w.Name)
		} else {
			expr = fmt.Sprintf("sum by (agency, service) (sum_over_time(sla:slot:good_sum5m[%s]))\n/\nsum by (agency, service) (sum_over_time(sla:slot:count5m[%s]))", w.Name, w.Name)
		}
		out = append(out, rule{Record: "sla:availability:ratio_rate" + w.Name, Expr: expr})
	}
	return out
}

func burnAlert(name, severity string, burns []Burn, externalURL string, a *catalogue.Agency) []rule {
	return burnAlertOf(name, severity, burns, externalURL, a, "sla:availability", "sla:objective", "failing")
}

// burnAlertOf is a burn-rate alert on the ratio records prefix:ratio_rate<w>
// against the objective series.
func burnAlertOf(name, severity string, burns []Burn, externalURL string, a *catalogue.Agency, prefix, objective, what string) []rule {
	var conds []string
	for _, b := range burns {
		f := strconv.FormatFloat(b.Factor, 'f', -1, 64)
		conds = append(conds, fmt.Sprintf(
			"(\n  (1 - %s:ratio_rate%s) > on(agency, service) group_left(tier) (%s * (1 - %s))\n  and on(agency, service)\n  (1 - %s:ratio_rate%s) > on(agency, service) (%s * (1 - %s))\n)",
			prefix, b.Long, f, objective, prefix, b.Short, f, objective))
	}
	kind := "page"
	if severity != "critical" {
		kind = "ticket"
	}
	return []rule{{
		Alert:  name,
		Expr:   strings.Join(conds, "\nor\n"),
		Labels: map[string]string{"severity": severity, "burn": kind},
		Annotations: map[string]string{
			"summary":     "{{ $labels.service }} of " + a.Name + " is burning its " + map[bool]string{true: "latency ", false: ""}[prefix == latencyPrefix] + "error budget too fast",
			"description": "{{ $labels.service }} of " + a.Name + " is " + what + " fast enough to empty its monthly error budget early: " + burnText(burns) + ".",
			"runbook_url": externalURL + "/runbooks#" + strings.ToLower(name),
			"dashboard":   externalURL + "/agency/" + a.ID + "#{{ $labels.service }}",
		},
	}}
}

// burnText describes burn conditions for people: "error ratio over 14.4×
// the budget over 1h and 5m, or 6× over 6h and 30m".
func burnText(burns []Burn) string {
	parts := make([]string, len(burns))
	for i, b := range burns {
		parts[i] = fmt.Sprintf("%s× the budget rate over %s and %s", strconv.FormatFloat(b.Factor, 'f', -1, 64), b.Long, b.Short)
	}
	return "error ratio above " + strings.Join(parts, ", or ")
}
