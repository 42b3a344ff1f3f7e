// Package report makes an agency's monthly SLA report: availability of each
// service against its objective for the calendar month (maintenance and
// time outside service hours excluded), error budget used, and the month's
// incidents with start, end, duration and ticket, and MTTR. It renders HTML,
// and PDF through headless Chromium where available.
package report

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

//go:embed sla.html
var tmplFS embed.FS

// SLA is an agency's monthly SLA report.
type SLA struct {
	Provider    string              `json:"provider"`
	Agency      string              `json:"agency"`
	AgencyName  string              `json:"agency_name"`
	Phase       string              `json:"phase"`
	Month       string              `json:"month"`
	TimeZone    string              `json:"time_zone"`
	GeneratedAt time.Time           `json:"generated_at"`
	Complete    bool                `json:"complete"` // the month is over
	Services    []rules.MonthFigure `json:"services"`
	Incidents   []Incident          `json:"incidents"`
	// Restatements of the month's figures, in force and withdrawn, each
	// with its reason and (in force) its effect.
	Restatements []rules.Restatement `json:"restatements"`
	// MTTRSeconds is the mean time to resolve the month's resolved incidents.
	MTTRSeconds float64  `json:"mttr_seconds"`
	Maintenance []string `json:"maintenance"`
	NoData      bool     `json:"no_data"`
}

// Incident is one incident of the month.
type Incident struct {
	ID       string    `json:"id"`
	Service  string    `json:"service"`
	Priority string    `json:"priority"`
	Summary  string    `json:"summary"`
	Ticket   string    `json:"ticket"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end,omitzero"`
	Seconds  float64   `json:"duration_seconds"`
	Open     bool      `json:"open"`
}

// Build assembles the report of an agency for a month ("2006-01"). q must
// answer for the agency; incidents are the agency's.
func Build(ctx context.Context, engine promql.QueryEngine, q storage.Queryable, c *catalogue.Catalogue, agency, month string, incidents []builtin.Record, restatements []rules.Restatement, now time.Time) (*SLA, error) {
	a := c.Agency(agency)
	if a == nil {
		return nil, fmt.Errorf("no agency %q", agency)
	}
	start, end, err := rules.MonthBounds(month, a.Location())
	if err != nil {
		return nil, err
	}
	figs, err := rules.Month(ctx, engine, q, c, a, month, now)
	if err != nil {
		return nil, err
	}
	figs, applied, err := rules.Restate(ctx, engine, q, c, a, month, figs, restatements)
	if err != nil {
		return nil, err
	}
	if applied == nil {
		applied = []rules.Restatement{}
	}
	r := &SLA{Provider: c.Provider.Name, Agency: a.ID, AgencyName: a.Name, Phase: string(a.Phase), Month: month,
		TimeZone: a.Location().String(), GeneratedAt: now.UTC(), Complete: !now.Before(end), Services: figs, NoData: true,
		Restatements: applied}
	for _, f := range figs {
		if f.HasData {
			r.NoData = false
		}
	}
	for _, w := range a.MaintenanceWindows(start, end) {
		r.Maintenance = append(r.Maintenance, w.Start.In(a.Location()).Format("2006-01-02 15:04")+" – "+w.End.In(a.Location()).Format("2006-01-02 15:04"))
	}
	var total float64
	resolved := 0
	for _, inc := range incidents {
		if inc.Agency != agency {
			continue
		}
		stop := inc.ResolvedAt
		if inc.Open() {
			stop = now
		}
		if !inc.OpenedAt.Before(end) || stop.Before(start) {
			continue // not in the month
		}
		row := Incident{ID: inc.ID, Service: inc.Service, Priority: inc.Priority, Summary: inc.Summary, Ticket: inc.Ticket,
			Start: inc.OpenedAt, Open: inc.Open(), Seconds: stop.Sub(inc.OpenedAt).Seconds()}
		if !inc.Open() {
			row.End = inc.ResolvedAt
			total += row.Seconds
			resolved++
		}
		r.Incidents = append(r.Incidents, row)
	}
	sort.Slice(r.Incidents, func(i, j int) bool { return r.Incidents[i].Start.Before(r.Incidents[j].Start) })
	if resolved > 0 {
		r.MTTRSeconds = total / float64(resolved)
	}
	return r, nil
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "no data"
	}
	return strconv.FormatFloat(v*100, 'f', 3, 64) + " %"
}

func dur(s float64) string {
	if s <= 0 {
		return "—"
	}
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}

// HasLatency reports whether a service of the report has a latency
// objective.
func (r *SLA) HasLatency() bool {
	for _, f := range r.Services {
		if f.Latency != nil {
			return true
		}
	}
	return false
}

// HTML renders the report.
func HTML(r *SLA) ([]byte, error) {
	loc, err := time.LoadLocation(r.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	t, err := template.New("sla.html").Funcs(template.FuncMap{
		"pct": pct, "dur": dur,
		"local": func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04") },
		"ms":    func(s float64) string { return strconv.FormatFloat(s*1000, 'f', -1, 64) + " ms" },
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(loc).Format("2006-01-02 15:04")
		},
		"budget": func(f rules.MonthFigure) string {
			if !f.HasData {
				return "no data"
			}
			return strconv.FormatFloat(f.BudgetUsed*100, 'f', 1, 64) + " %"
		},
	}).ParseFS(tmplFS, "sla.html")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Chromium returns the path of a Chromium for PDF rendering, or "".
func Chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// PDF prints HTML to PDF with headless Chromium.
func PDF(ctx context.Context, chromium string, html []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "samdrift-report-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(in, html, 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--no-pdf-header-footer", "--print-to-pdf="+out, "file://"+in)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chromium --print-to-pdf: %w: %s", err, b)
	}
	return os.ReadFile(out)
}
