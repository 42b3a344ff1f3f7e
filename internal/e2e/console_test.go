package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
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
