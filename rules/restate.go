package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// Restatement kinds.
const (
	// RestateExcluded: the window counts neither good nor bad (a change the
	// agency asked for, an outage of its own supplier).
	RestateExcluded = "excluded"
	// RestateCountedGood: every counted slot of the window is good.
	RestateCountedGood = "counted_good"
	// RestateCountedBad: every counted slot of the window is bad.
	RestateCountedBad = "counted_bad"
)

// Restatement corrects a service's SLA over a window after the fact. It
// changes how the month's measured slots count, never the measurement: the
// slots stay as Samdrift recorded them, and the month figures are computed
// from them and the restatements in force.
type Restatement struct {
	ID      string    `json:"id"`
	Agency  string    `json:"agency"`
	Service string    `json:"service"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Kind    string    `json:"kind"`
	Reason  string    `json:"reason"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	// Withdrawn: a withdrawn restatement no longer counts; it stays on
	// record with who withdrew it, when and why.
	WithdrawnBy     string    `json:"withdrawn_by,omitempty"`
	WithdrawnAt     time.Time `json:"withdrawn_at,omitzero"`
	WithdrawnReason string    `json:"withdrawn_reason,omitempty"`
	// Version is the record's revision in the store (1: as made, 2:
	// withdrawn).
	Version uint64 `json:"version"`
	// Effect on the month's figure when it was last computed (reports).
	Effect *RestatementEffect `json:"effect,omitempty"`
}

// RestatementEffect is what a restatement changed in its month's figure.
type RestatementEffect struct {
	Month        string  `json:"month"`
	CountedSlots float64 `json:"counted_slots"` // measured slots of the window
	GoodSlots    float64 `json:"good_slots"`    // of which good
	// GoodDelta and CountedDelta are the changes to the month's slots.
	GoodDelta    float64 `json:"good_delta"`
	CountedDelta float64 `json:"counted_delta"`
}

// RestateSettle is how long after a window its 5-minute aggregates are
// surely written (they run a minute behind, every five minutes).
const RestateSettle = 10 * time.Minute

// Active reports whether the restatement counts.
func (r Restatement) Active() bool { return r.WithdrawnAt.IsZero() }

// Validate checks a new restatement against the catalogue.
func (r Restatement) Validate(c *catalogue.Catalogue, now time.Time) error {
	a := c.Agency(r.Agency)
	if a == nil {
		return fmt.Errorf("no agency %q", r.Agency)
	}
	svc := a.Service(r.Service)
	if svc == nil {
		return fmt.Errorf("agency %q has no service %q", r.Agency, r.Service)
	}
	if svc.SLA == nil {
		return fmt.Errorf("service %q of %q has no SLA to restate", r.Service, r.Agency)
	}
	switch r.Kind {
	case RestateExcluded, RestateCountedGood, RestateCountedBad:
	default:
		return fmt.Errorf("kind %q: want excluded, counted_good or counted_bad", r.Kind)
	}
	if strings.TrimSpace(r.Reason) == "" {
		return errors.New("a restatement needs a reason")
	}
	if len(r.Reason) > 2000 {
		return errors.New("reason: at most 2000 characters")
	}
	if r.From.IsZero() || r.To.IsZero() || !r.To.After(r.From) {
		return errors.New("from and to: RFC 3339 times, from before to")
	}
	if r.To.After(now.Add(-RestateSettle)) {
		return fmt.Errorf("to must be at least %s ago: a restatement corrects what was measured and aggregated", RestateSettle)
	}
	if MonthOf(r.From, a.Location()) != MonthOf(r.To.Add(-time.Millisecond), a.Location()) {
		return fmt.Errorf("the window spans two calendar months (%s): restate each month on its own", a.Location())
	}
	return nil
}

// Overlaps reports whether two restatements of one service overlap in time.
func (r Restatement) Overlaps(o Restatement) bool {
	return r.Agency == o.Agency && r.Service == o.Service && r.From.Before(o.To) && o.From.Before(r.To)
}

// Restate applies the active restatements of the month to its figures:
// each restatement's window is read from the measured slots (the agency's
// matcher on every selector) and the month's good and counted slots,
// availability, downtime, error budget and result recomputed. It returns
// the figures and the restatements of the month with their effects.
// Restatements of other agencies or services change nothing here.
func Restate(ctx context.Context, engine promql.QueryEngine, q storage.Queryable, c *catalogue.Catalogue, a *catalogue.Agency, month string, figs []MonthFigure, rs []Restatement) ([]MonthFigure, []Restatement, error) {
	start, end, err := MonthBounds(month, a.Location())
	if err != nil {
		return nil, nil, err
	}
	slot := time.Duration(c.Defaults.EvaluationInterval).Seconds()
	byService := map[string]int{}
	for i, f := range figs {
		byService[f.Service] = i
	}
	var applied []Restatement
	for _, r := range rs {
		if r.Agency != a.ID || !r.From.Before(end) || !r.To.After(start) {
			continue
		}
		i, ok := byService[r.Service]
		if !ok {
			continue
		}
		if !r.Active() {
			applied = append(applied, r)
			continue
		}
		from, to := maxTime(r.From, start), minTime(r.To, end)
		// The slots evaluated in [from, to): (from-1ms, to-1ms].
		rng := to.Sub(from).Milliseconds()
		at := to.Add(-time.Millisecond)
		count := func(fn string) (float64, error) {
			expr, err := tenancy.Scope(fmt.Sprintf(`sum(%s(sla:slot:good{service=%q}[%dms]))`, fn, r.Service, rng), a.ID)
			if err != nil {
				return 0, err
			}
			qry, err := engine.NewInstantQuery(ctx, q, nil, expr, at)
			if err != nil {
				return 0, err
			}
			defer qry.Close()
			res := qry.Exec(ctx)
			if res.Err != nil {
				return 0, res.Err
			}
			v, err := res.Vector()
			if err != nil || len(v) == 0 {
				return 0, err
			}
			return v[0].F, nil
		}
		counted, err := count("count_over_time")
		if err != nil {
			return nil, nil, err
		}
		good, err := count("sum_over_time")
		if err != nil {
			return nil, nil, err
		}
		eff := &RestatementEffect{Month: month, CountedSlots: counted, GoodSlots: good}
		switch r.Kind {
		case RestateExcluded:
			eff.GoodDelta, eff.CountedDelta = -good, -counted
		case RestateCountedGood:
			eff.GoodDelta = counted - good
		case RestateCountedBad:
			eff.GoodDelta = -good
		}
		f := &figs[i]
		f.Good += eff.GoodDelta
		f.Counted += eff.CountedDelta
		if r.Kind == RestateExcluded {
			f.ScopeSeconds = math.Max(0, f.ScopeSeconds-counted*slot)
		}
		recompute(f, slot)
		r.Effect = eff
		applied = append(applied, r)
	}
	sort.Slice(applied, func(i, j int) bool { return applied[i].From.Before(applied[j].From) })
	return figs, applied, nil
}

// recompute derives a figure's ratios from its slots.
func recompute(f *MonthFigure, slot float64) {
	f.HasData, f.Availability, f.DownSeconds, f.BudgetUsed, f.Met = false, math.NaN(), 0, 0, false
	if f.Counted > 0 {
		f.HasData = true
		f.Availability = f.Good / f.Counted
		f.DownSeconds = (f.Counted - f.Good) * slot
		if budget := (1 - f.Objective) * f.ScopeSeconds; budget > 0 {
			f.BudgetUsed = f.DownSeconds / budget
		}
		f.Met = f.Availability >= f.Objective
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
