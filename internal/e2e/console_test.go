package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/rules"
)

// artifacts is where browser screenshots are kept (CI can publish them).
func artifacts(t *testing.T) string {
	dir := filepath.Join("..", "..", "test-artifacts")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func browser(t *testing.T) (context.Context, func() []string) {
	path := peer(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1920, 1080))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	var mu sync.Mutex
	var requests []string
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}))
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), requests...)
	}
}

// TestConsoleInBrowser drives the console in real headless Chromium: the
// NOC wall lists every demo agency; an agency's login shows that agency
// only (checked in the DOM); another agency's page is not found; the pages
// make no request outside Samdrift and are keyboard-navigable.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	ctx, requests := browser(t)
	addr := freeAddr(t)
	start(t, addr, "demo", "--data-dir", filepath.Join(t.TempDir(), "demo"))
	base := "http://" + addr
	shots := artifacts(t)

	login := func(token string) {
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(base+"/login"),
			chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), token),
			chromedp.Submit(chromedp.ID("token")),
			chromedp.WaitVisible(chromedp.CSS("section[data-agency]")),
		))
	}
	login("ops-demo-token")
	agencies, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("section[data-agency]")].map(e => e.dataset.agency)`))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"digg", "ssc", "bo", "ehm", "af", "pm", "tullverket"}, agencies)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "console-noc-wall.png"), png, 0o644))

	// Keyboard: the first Tab reaches the skip link.
	require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent("\t")))
	focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.textContent.trim()`))
	require.NoError(t, err)
	require.Equal(t, "Skip to content", focused)

	// Log out; log in as bo.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("header button")), chromedp.WaitVisible(chromedp.ID("token"))))
	login("bo-demo-token")
	agencies, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("[data-agency]")].map(e => e.dataset.agency)`))
	require.NoError(t, err)
	require.Equal(t, []string{"bo"}, agencies)
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.Contains(t, body, "Barnombudsmannen")
	for _, other := range []string{"Tullverket", "Pensionsmyndigheten", "Arbetsförmedlingen", "E-hälsomyndigheten", "Statens servicecenter", "digital förvaltning"} {
		require.NotContains(t, body, other, "bo's portal shows nothing of another agency")
	}
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "console-agency-bo.png"), png, 0o644))

	// The monthly SLA report, downloadable from the portal.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href="/agency/bo/report"]`)), chromedp.WaitVisible(chromedp.CSS("h1"))))
	h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	require.NoError(t, err)
	require.Contains(t, h1, "SLA report")
	require.Contains(t, h1, "Barnombudsmannen")
	svcs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr[data-service]").length`))
	require.NoError(t, err)
	require.Positive(t, svcs, "the report lists bo's services")
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "console-report-bo.png"), png, 0o644))
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/agency/tullverket/report")))
	body, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.Contains(t, body, "404")
	require.NotContains(t, body, "Tullverket", "another agency's report")

	// Another agency's page: not found, nothing of it shown.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/agency/tullverket")))
	body, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.Contains(t, body, "404")
	require.NotContains(t, body, "Tullverket")

	// A bad session gets the login page, never data.
	_, err = chromedp.Run(ctx, func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "samdrift_session", Value: "forged", URL: base + "/"})
		return chromedp.Void{}, err
	})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token"))))

	for _, u := range requests() {
		require.True(t, strings.HasPrefix(u, base) || strings.HasPrefix(u, "data:"), "request outside Samdrift: %s", u)
	}
}

// TestDemoAliveAtOnce: `samdrift demo` on a fresh data directory backfills
// its history before it serves, so that within 60 s of the start every
// service on the NOC wall has its month figure and a 24-hour sparkline
// (no "no data" anywhere), last month's report has figures for every
// service, and the wall fits a 1920×1080 wall screen without horizontal
// scrolling (three columns) and a laptop screen (one column), in Chromium.
func TestDemoAliveAtOnce(t *testing.T) {
	t.Parallel()
	ctx, _ := browser(t)
	addr := freeAddr(t)
	began := time.Now()
	p := start(t, addr, "demo", "--data-dir", filepath.Join(t.TempDir(), "demo"))
	require.Contains(t, p.Logs.String(), "backfilled the demo's history")
	base := "http://" + addr
	shots := artifacts(t)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "ops-demo-token"),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS("section[data-agency]")),
	))
	type wall struct {
		Rows, Figures, NoData, Sparks int
		ScrollWidth, Width            int
		Columns                       int
	}
	read := func() (wall, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[wall](`(() => {
			const rows = [...document.querySelectorAll("tr[data-service]")];
			const lefts = new Set([...document.querySelectorAll("section[data-agency]")].map(s => Math.round(s.getBoundingClientRect().left)));
			return {
				Rows: rows.length,
				Figures: rows.filter(r => /[0-9] %/.test(r.children[1].textContent)).length,
				NoData: rows.filter(r => r.textContent.includes("no data") || r.querySelector('svg[aria-label="no data"]')).length,
				Sparks: rows.filter(r => r.querySelector("svg.spark path.line")).length,
				ScrollWidth: document.documentElement.scrollWidth, Width: window.innerWidth,
				Columns: lefts.size,
			};
		})()`))
	}
	var w wall
	for {
		require.NoError(t, chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("section[data-agency]"))))
		var err error
		w, err = read()
		require.NoError(t, err)
		if w.Rows > 0 && w.Figures == w.Rows && w.NoData == 0 && w.Sparks == w.Rows {
			break
		}
		require.Less(t, time.Since(began), 60*time.Second, "60 s after the start the wall still has services without figures: %+v", w)
		time.Sleep(2 * time.Second)
	}
	t.Logf("every one of %d services has its month figure and sparkline %s after the start", w.Rows, time.Since(began).Round(100*time.Millisecond))
	require.LessOrEqual(t, w.ScrollWidth, w.Width, "no horizontal scroll at 1920×1080")
	require.Equal(t, 3, w.Columns, "three columns on the wall screen")
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "noc-wall-1920.png"), png, 0o644))

	// A laptop: one column, no horizontal scroll either.
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(800, 900), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("section[data-agency]"))))
	w, err = read()
	require.NoError(t, err)
	require.LessOrEqual(t, w.ScrollWidth, w.Width, "no horizontal scroll on a laptop")
	require.Equal(t, 1, w.Columns, "one column on a laptop")

	// Last month's report has a figure for every service with an SLA.
	month := time.Now().In(mustLoc(t, "Europe/Stockholm")).AddDate(0, 0, -time.Now().In(mustLoc(t, "Europe/Stockholm")).Day()).Format("2006-01")
	for _, a := range []string{"bo", "tullverket", "digg"} {
		r, err := client(addr, a+"-demo-token").Get("/api/v1/reports/sla?month=" + month)
		require.NoError(t, err)
		require.Equal(t, 200, r.Status, r.Body)
		var env struct{ Data report.SLA }
		require.NoError(t, json.Unmarshal([]byte(r.Body), &env), r.Body)
		rep := env.Data
		require.NotEmpty(t, rep.Services, a)
		for _, s := range rep.Services {
			require.True(t, s.HasData, "%s/%s has last month's figure", a, s.Service)
		}
	}
	repDir := t.TempDir()
	out := cli(t, 0, "report", "sla", "--url", base, "--token", "admin-demo-token", "--agency", "bo", "--month", month, "--out", repDir, "--pdf", "never")
	require.Contains(t, out, month)

	// Past incidents of the history, resolved, with their tickets.
	_, past := incidents(t, addr, "bo-demo-token", "state=resolved")
	require.NotEmpty(t, past, "bo's past incidents")
	for _, inc := range past {
		require.Equal(t, "bo", inc.Agency)
		require.Regexp(t, `^INC\d{12}$`, inc.Ticket)
		require.True(t, inc.OpenedAt.Before(began), "from the history")
	}

	// digg's API has a latency objective: last month's figure in the
	// report (JSON and HTML), this month's in its portal.
	r, err := client(addr, "digg-demo-token").Get("/api/v1/reports/sla?month=" + month)
	require.NoError(t, err)
	var env struct{ Data report.SLA }
	require.NoError(t, json.Unmarshal([]byte(r.Body), &env))
	var lat *rules.LatencyFigure
	for _, s := range env.Data.Services {
		if s.Service == "api" {
			lat = s.Latency
		}
	}
	require.NotNil(t, lat, "digg/api's latency figure in the report")
	require.True(t, lat.HasData)
	require.Equal(t, 0.25, lat.ThresholdSeconds)
	r, err = client(addr, "digg-demo-token").Get("/api/v1/reports/sla?format=html&month=" + month)
	require.NoError(t, err)
	require.Contains(t, r.Body, "Latency per service")
	require.Contains(t, r.Body, `data-latency-service="api"`)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/agency/digg"), chromedp.WaitVisible(chromedp.CSS(`tr[data-service="api"]`))))
	cell, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-service="api"] td[data-latency]').dataset.latency`))
	require.NoError(t, err)
	require.Regexp(t, `^9[0-9]\.[0-9]+ %$`, cell, "digg/api's latency this month in the portal")
}
