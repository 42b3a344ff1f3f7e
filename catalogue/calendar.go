package catalogue

import (
	"fmt"
	"strings"
	"time"
)

// ServiceHours is the set of weekly intervals in which an SLA counts, such as
// "Mon-Fri 07:00-18:00". The zero value means 24x7.
type ServiceHours struct {
	Ranges []DayRange
}

// DayRange is a set of weekdays with one daily interval [Start, End) in
// minutes after midnight, local time. End may be 1440 ("24:00").
type DayRange struct {
	Days  [7]bool // indexed by time.Weekday
	Start int
	End   int
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseServiceHours parses "Mon-Fri 07:00-18:00", several such ranges
// separated by commas ("Mon-Fri 07:00-18:00, Sat 09:00-13:00"), or "24x7".
func ParseServiceHours(s string) (ServiceHours, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "24x7") {
		return ServiceHours{}, nil
	}
	var sh ServiceHours
	for _, part := range strings.Split(s, ",") {
		fields := strings.Fields(part)
		if len(fields) != 2 {
			return ServiceHours{}, fmt.Errorf("%q: want days and hours, such as \"Mon-Fri 07:00-18:00\"", strings.TrimSpace(part))
		}
		var r DayRange
		days, err := parseDays(fields[0])
		if err != nil {
			return ServiceHours{}, err
		}
		r.Days = days
		r.Start, r.End, err = parseClockRange(fields[1])
		if err != nil {
			return ServiceHours{}, err
		}
		if r.End <= r.Start {
			return ServiceHours{}, fmt.Errorf("%q: service hours must end after they start on the same day", fields[1])
		}
		sh.Ranges = append(sh.Ranges, r)
	}
	return sh, nil
}

// Always reports whether the service hours are 24x7.
func (sh ServiceHours) Always() bool { return len(sh.Ranges) == 0 }

// Contains reports whether t (in the zone that applies) is within service hours.
func (sh ServiceHours) Contains(t time.Time) bool {
	if sh.Always() {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	for _, r := range sh.Ranges {
		if r.Days[t.Weekday()] && m >= r.Start && m < r.End {
			return true
		}
	}
	return false
}

func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	for _, item := range strings.Split(strings.ToLower(s), "+") {
		from, to, isRange := strings.Cut(item, "-")
		f, ok := weekdays[from]
		if !ok {
			return days, fmt.Errorf("unknown weekday %q (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)", from)
		}
		if !isRange {
			days[f] = true
			continue
		}
		t, ok := weekdays[to]
		if !ok {
			return days, fmt.Errorf("unknown weekday %q (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)", to)
		}
		for d := f; ; d = (d + 1) % 7 {
			days[d] = true
			if d == t {
				break
			}
		}
	}
	return days, nil
}

func parseClockRange(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want HH:MM-HH:MM", s)
	}
	if start, err = parseClock(a); err != nil {
		return 0, 0, err
	}
	if end, err = parseClock(b); err != nil {
		return 0, 0, err
	}
	return start, end, nil
}

func parseClock(s string) (int, error) {
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); n != 2 || err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q: want a time of day HH:MM", s)
	}
	if h == 24 && m == 0 {
		return 1440, nil
	}
	if h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("%q: not a time of day", s)
	}
	return h*60 + m, nil
}

// Schedule is a recurring maintenance window, such as
// "first Tue of month 18:00-22:00", "last Sun of month 02:00-06:00",
// "every Sat 22:00-02:00" or "daily 03:00-03:30". A window whose end is not
// after its start runs past midnight.
type Schedule struct {
	Nth     int // 1..4 for first..fourth, -1 for last, 0 for every matching day
	Weekday time.Weekday
	Daily   bool
	Start   int // minutes after midnight
	End     int
}

var ordinals = map[string]int{"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}

// ParseSchedule parses a recurring maintenance schedule.
func ParseSchedule(s string) (Schedule, error) {
	f := strings.Fields(strings.ToLower(s))
	var sc Schedule
	var clock string
	switch {
	case len(f) == 2 && f[0] == "daily":
		sc.Daily, clock = true, f[1]
	case len(f) == 3 && f[0] == "every":
		wd, ok := weekdays[f[1]]
		if !ok {
			return sc, fmt.Errorf("unknown weekday %q in schedule %q", f[1], s)
		}
		sc.Weekday, clock = wd, f[2]
	case len(f) == 5 && f[2] == "of" && f[3] == "month":
		n, ok := ordinals[f[0]]
		if !ok {
			return sc, fmt.Errorf("unknown ordinal %q in schedule %q (use first, second, third, fourth, last)", f[0], s)
		}
		wd, ok := weekdays[f[1]]
		if !ok {
			return sc, fmt.Errorf("unknown weekday %q in schedule %q", f[1], s)
		}
		sc.Nth, sc.Weekday, clock = n, wd, f[4]
	default:
		return sc, fmt.Errorf("schedule %q: want \"first Tue of month 18:00-22:00\", \"every Sat 22:00-02:00\" or \"daily 03:00-04:00\"", s)
	}
	var err error
	if sc.Start, sc.End, err = parseClockRange(clock); err != nil {
		return sc, fmt.Errorf("schedule %q: %w", s, err)
	}
	if sc.Start == sc.End {
		return sc, fmt.Errorf("schedule %q: window is empty", s)
	}
	return sc, nil
}

// Window is a half-open time interval [Start, End).
type Window struct {
	Start, End time.Time
}

// Windows returns the schedule's windows that overlap [from, to), in loc.
func (sc Schedule) Windows(from, to time.Time, loc *time.Location) []Window {
	var out []Window
	// Start a day early so a window that began yesterday and runs past
	// midnight is found.
	f := from.In(loc)
	day := time.Date(f.Year(), f.Month(), f.Day()-1, 0, 0, 0, 0, loc)
	for ; day.Before(to); day = time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc) {
		if !sc.matches(day) {
			continue
		}
		start := time.Date(day.Year(), day.Month(), day.Day(), 0, sc.Start, 0, 0, loc)
		endDay := day.Day()
		if sc.End <= sc.Start {
			endDay++
		}
		end := time.Date(day.Year(), day.Month(), endDay, 0, sc.End, 0, 0, loc)
		if end.After(from) && start.Before(to) {
			out = append(out, Window{Start: start, End: end})
		}
	}
	return out
}

func (sc Schedule) matches(day time.Time) bool {
	if sc.Daily {
		return true
	}
	if day.Weekday() != sc.Weekday {
		return false
	}
	switch {
	case sc.Nth == 0:
		return true
	case sc.Nth > 0:
		return (day.Day()-1)/7+1 == sc.Nth
	default:
		return day.AddDate(0, 0, 7).Month() != day.Month()
	}
}

// MaintenanceWindows returns the agency's maintenance windows (one-off and
// recurring) that overlap [from, to).
func (a *Agency) MaintenanceWindows(from, to time.Time) []Window {
	var out []Window
	for _, m := range a.Maintenance {
		if m.Schedule == "" {
			if m.End.After(from) && m.Start.Before(to) {
				out = append(out, Window{Start: m.Start, End: m.End})
			}
			continue
		}
		sc, err := ParseSchedule(m.Schedule)
		if err != nil {
			continue // rejected at load time
		}
		out = append(out, sc.Windows(from, to, a.location)...)
	}
	return out
}

// InMaintenance reports whether t lies in one of the agency's maintenance windows.
func (a *Agency) InMaintenance(t time.Time) bool {
	for _, w := range a.MaintenanceWindows(t.Add(-48*time.Hour), t.Add(time.Second)) {
		if !t.Before(w.Start) && t.Before(w.End) {
			return true
		}
	}
	return false
}
