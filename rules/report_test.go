package rules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

func incident(id, agency, ticket string, opened, resolved time.Time) builtin.Record {
	inc := ticketing.Incident{ID: id, Agency: agency, Service: "web", Priority: "High", Summary: "Web of " + agency + " is down",
		Ticket: ticket, OpenedAt: opened, State: ticketing.StateOpen}
	if !resolved.IsZero() {
		inc.State, inc.ResolvedAt = ticketing.StateResolved, resolved
	}
	return builtin.Record{Incident: inc}
}

// TestSLAReportFromMonthFixture builds the monthly SLA report from the
// month fixture: its figures are the hand-counted ones, its incidents the
// agency's of that month only, and the HTML, rendered in headless Chromium,
// shows them; a month without data says so instead of 100 %.
func TestSLAReportFromMonthFixture(t *testing.T) {
	mf := rules.BuildMonthFixture(t)
	good, total, scope := mf.Expect()
	loc, _ := time.LoadLocation("Europe/Stockholm")
	d := func(day, h, m int) time.Time { return time.Date(2026, 10, day, h, m, 0, 0, loc) }
	incidents := []builtin.Record{
		incident("01KA0000000000000000000001", "alpha", "INC000000000101", d(6, 10, 1), d(6, 10, 46)),
		incident("01KA0000000000000000000002", "alpha", "INC000000000102", d(30, 17, 56), d(30, 18, 11)),
		incident("01KA0000000000000000000003", "alpha", "INC000000000090", time.Date(2026, 9, 20, 8, 0, 0, 0, loc), time.Date(2026, 9, 20, 9, 0, 0, 0, loc)),
		incident("01KA0000000000000000000004", "beta", "INC000000000999", d(7, 8, 0), d(7, 9, 0)),
		incident("01KA0000000000000000000005", "alpha", "INC000000000103", d(31, 22, 0), time.Time{}),
	}
	now := mf.End().Add(time.Hour)
	r, err := report.Build(context.Background(), mf.Engine, mf.DB, mf.Cat, "alpha", "2026-10", incidents, nil, now)
	require.NoError(t, err)
	require.True(t, r.Complete)
	require.False(t, r.NoData)
	require.Len(t, r.Services, 1)
	s := r.Services[0]
	require.InDelta(t, good, s.Good, 0)
	require.Equal(t, total, s.Counted)
	require.Equal(t, good/total, s.Availability, "identical to the fixture's hand count")
	require.InDelta(t, (total-good)*60/((1-0.995)*scope), s.BudgetUsed, 1e-12)
	require.False(t, s.Met)
	require.Len(t, r.Maintenance, 2, "the one-off migration and the last-Thursday patching")
	var ids []string
	for _, inc := range r.Incidents {
		ids = append(ids, inc.Ticket)
	}
	require.Equal(t, []string{"INC000000000101", "INC000000000102", "INC000000000103"}, ids, "October's incidents of alpha only, by start")
	require.Equal(t, (45*time.Minute+15*time.Minute).Seconds()/2, r.MTTRSeconds, "mean of the resolved ones")

	// The JSON the reports API sends round-trips, figures and all.
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var back report.SLA
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, s.Availability, back.Services[0].Availability)

	html, err := report.HTML(r)
	require.NoError(t, err)
	require.NotContains(t, string(html), "INC000000000999", "another agency's incident")

	// A month with no data: no availability, and the report says so.
	empty, err := report.Build(context.Background(), mf.Engine, mf.DB, mf.Cat, "alpha", "2026-08", nil, nil, now)
	require.NoError(t, err)
	require.True(t, empty.NoData)
	require.True(t, math.IsNaN(empty.Services[0].Availability))
	_, err = json.Marshal(empty)
	require.NoError(t, err, "NaN must not break the JSON")
	emptyHTML, err := report.HTML(empty)
	require.NoError(t, err)
	require.NotContains(t, string(emptyHTML), "100.000 %")

	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SAMDRIFT_REQUIRE_PEERS") != "" {
			t.Fatal("chromium not installed (apt-get install chromium; .ci/run does)")
		}
		t.Skip("chromium not installed")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(page, html, 0o600))
	emptyPage := filepath.Join(dir, "empty.html")
	require.NoError(t, os.WriteFile(emptyPage, emptyHTML, 0o600))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(filepath.Join(dir, "profile")))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("file://"+page)))
	avail, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-service="web"] td[data-availability]').innerText`))
	require.NoError(t, err)
	require.Equal(t, strconv.FormatFloat(100*good/total, 'f', 3, 64)+" %", avail, "the availability cell shows the fixture's figure")
	result, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-service="web"] td:nth-child(4)').innerText`))
	require.NoError(t, err)
	require.Equal(t, "missed", result)
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('tr[data-incident] td:nth-child(2)')].map(td => td.innerText)`))
	require.NoError(t, err)
	require.Equal(t, ids, rows)
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	require.NoError(t, err)
	require.Contains(t, text, "MTTR")
	require.Contains(t, text, "30m0s")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("file://"+emptyPage)))
	note, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('[data-nodata]') !== null && document.querySelector('td[data-availability]').innerText === 'no data'`))
	require.NoError(t, err)
	require.True(t, note, "a month without data says so")

	pdf, err := report.PDF(context.Background(), chromium, html)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(pdf, []byte("%PDF-")), "a PDF")
}
