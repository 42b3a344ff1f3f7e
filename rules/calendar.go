package rules

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
)

// Calendar writes the series that put an agency's SLA on its calendar, at
// each evaluation of its slot rules and at the same timestamp, so the rules
// read exactly the calendar of the moment they evaluate:
//
//	samdrift_sla_month{agency, month="2026-11"}         1 (the month in the agency's time zone)
//	samdrift_sla_in_scope{agency, service}               1 inside service hours and outside maintenance, else 0
//	samdrift_sla_month_scope_seconds{agency, service}    in-scope seconds of the whole month
//	samdrift_maintenance{agency}                         1 inside a maintenance window, else 0
//
// PromQL knows only UTC; time zones, daylight saving time, service hours and
// recurring maintenance schedules are computed here.
type Calendar struct {
	mu        sync.Mutex
	lastMonth map[string]string            // agency -> month label last written
	scope     map[string]map[string]scoped // agency -> service -> cached month scope
}

type scoped struct {
	month   string
	seconds float64
}

// NewCalendar returns a calendar writer.
func NewCalendar() *Calendar {
	return &Calendar{lastMonth: map[string]string{}, scope: map[string]map[string]scoped{}}
}

// MonthOf returns the calendar month of t in loc, as "2006-01".
func MonthOf(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01") }

// InScope reports whether the SLA of the service counts at t: inside its
// service hours and outside the agency's maintenance windows.
func InScope(a *catalogue.Agency, svc *catalogue.Service, t time.Time) bool {
	if svc.SLA == nil {
		return false
	}
	sh, err := catalogue.ParseServiceHours(svc.SLA.ServiceHours)
	if err != nil {
		return false
	}
	return sh.Contains(t.In(a.Location())) && !a.InMaintenance(t)
}

// MonthScopeSeconds returns the in-scope seconds of the calendar month that
// contains t, to the minute (schedules are minute-aligned).
func MonthScopeSeconds(a *catalogue.Agency, svc *catalogue.Service, t time.Time) float64 {
	loc := a.Location()
	lt := t.In(loc)
	start := time.Date(lt.Year(), lt.Month(), 1, 0, 0, 0, 0, loc)
	end := start.AddDate(0, 1, 0)
	sh, err := catalogue.ParseServiceHours(svc.SLA.ServiceHours)
	if err != nil {
		return 0
	}
	windows := a.MaintenanceWindows(start, end)
	inMaint := func(m time.Time) bool {
		for _, w := range windows {
			if !m.Before(w.Start) && m.Before(w.End) {
				return true
			}
		}
		return false
	}
	secs := 0.0
	for m := start; m.Before(end); m = m.Add(time.Minute) {
		if sh.Contains(m.In(loc)) && !inMaint(m) {
			secs += 60
		}
	}
	return secs
}

// Write appends the agency's calendar series at t.
func (c *Calendar) Write(ctx context.Context, app storage.Appender, a *catalogue.Agency, t time.Time) error {
	ts := t.UnixMilli()
	month := MonthOf(t, a.Location())
	c.mu.Lock()
	prev := c.lastMonth[a.ID]
	c.lastMonth[a.ID] = month
	svcScope := c.scope[a.ID]
	if svcScope == nil {
		svcScope = map[string]scoped{}
		c.scope[a.ID] = svcScope
	}
	c.mu.Unlock()

	add := func(v float64, kv ...string) error {
		_, err := app.Append(0, labels.FromStrings(kv...), ts, v)
		if isSoft(err) {
			return nil
		}
		return err
	}
	if prev != "" && prev != month {
		// End the previous month's series at once, so that exactly one
		// month is current.
		if err := add(math.Float64frombits(value.StaleNaN), "__name__", seriesMonth, "agency", a.ID, "month", prev); err != nil {
			return err
		}
	}
	if err := add(1, "__name__", seriesMonth, "agency", a.ID, "month", month); err != nil {
		return err
	}
	maint := 0.0
	if a.InMaintenance(t) {
		maint = 1
	}
	if err := add(maint, "__name__", seriesMaint, "agency", a.ID); err != nil {
		return err
	}
	for _, svc := range a.Services {
		if svc.SLA == nil {
			continue
		}
		in := 0.0
		if InScope(a, svc, t) {
			in = 1
		}
		if err := add(in, "__name__", seriesInScope, "agency", a.ID, "service", svc.ID); err != nil {
			return err
		}
		c.mu.Lock()
		sc, ok := svcScope[svc.ID]
		c.mu.Unlock()
		if !ok || sc.month != month {
			sc = scoped{month: month, seconds: MonthScopeSeconds(a, svc, t)}
			c.mu.Lock()
			svcScope[svc.ID] = sc
			c.mu.Unlock()
		}
		if err := add(sc.seconds, "__name__", seriesScopeSecs, "agency", a.ID, "service", svc.ID); err != nil {
			return err
		}
	}
	return nil
}

// Forget drops cached state of an agency (its catalogue entry changed).
func (c *Calendar) Forget(agency string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.scope, agency)
}

// isSoft reports errors that mean the sample is already there or too old:
// another evaluation at the same time wrote it.
func isSoft(err error) bool {
	if err == nil {
		return true
	}
	return errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) ||
		errors.Is(err, storage.ErrOutOfBounds) || errors.Is(err, storage.ErrTooOldSample)
}
