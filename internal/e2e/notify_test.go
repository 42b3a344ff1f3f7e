package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/internal/testutil"
)

// TestNotifications: incidents opening and resolving reach an on-call
// webhook, an SMTP server and a real Alertmanager (Debian's); an incident
// Remedy refuses for good reaches the ops route as delivery_failed and shows
// on the API.
func TestNotifications(t *testing.T) {
	t.Parallel()
	peer(t, "prometheus-alertmanager")
	dir := t.TempDir()

	var mu sync.Mutex
	events := map[string][]string{} // route -> "event:agency"
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n struct {
			Event    string `json:"event"`
			Incident struct {
				Agency        string `json:"agency"`
				DeliveryError string `json:"delivery_error"`
			} `json:"incident"`
		}
		b, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(b, &n))
		mu.Lock()
		events[r.URL.Path] = append(events[r.URL.Path], n.Event+":"+n.Incident.Agency)
		mu.Unlock()
	}))
	defer hook.Close()
	smtpSrv, err := testutil.NewSMTPServer()
	require.NoError(t, err)
	defer smtpSrv.Close()

	amAddr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "am.yml"), "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n")
	startPeer(t, "prometheus-alertmanager", "--config.file="+filepath.Join(dir, "am.yml"),
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address=")

	// Remedy knows only ALPHA: beta's incidents are refused for good.
	simAddr := freeAddr(t)
	sim := exec.Command(binary, "remedy-sim", "--addr", simAddr, "--company", "ALPHA", "--company", "Test provider", "--password", "pw")
	require.NoError(t, sim.Start())
	t.Cleanup(func() { _ = sim.Process.Kill(); _ = sim.Wait() })
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, "pw")
	cat := remedyCatalogue("http://"+simAddr, pw) + fmt.Sprintf(`notifications:
  - name: oncall
    agencies: [alpha]
    webhook: {url: %q}
    email: {to: [noc@provider.example], from: samdrift@provider.example, smarthost: %q}
    alertmanager: {url: %q}
  - name: ops
    events: [delivery_failed]
    webhook: {url: %q}
`, hook.URL+"/oncall", smtpSrv.Addr(), "http://"+amAddr, hook.URL+"/ops")
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, cat)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + simAddr + "/api/jwt/login")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, 10*time.Second, 50*time.Millisecond)
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))

	started := time.Now().Add(-time.Minute)
	lbl := map[string]string{"alertname": "Down", "service": "web", "severity": "critical"}
	require.Equal(t, http.StatusOK, postAlerts(t, addr, alphaToken, webhook("firing", started, lbl)).code)
	require.Equal(t, http.StatusOK, postAlerts(t, addr, betaToken, webhook("firing", started, lbl)).code)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events["/oncall"]) == 1 && len(events["/ops"]) == 1
	}, 30*time.Second, 200*time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"opened:alpha"}, events["/oncall"], "the route is for alpha only")
	require.Equal(t, []string{"delivery_failed:beta"}, events["/ops"])
	mu.Unlock()
	require.Eventually(t, func() bool { return len(smtpSrv.Mail()) == 1 }, 10*time.Second, 100*time.Millisecond)
	mail := smtpSrv.Mail()[0].Data
	require.Contains(t, mail, "[Samdrift][Critical][opened] alpha/web")
	require.Regexp(t, `Ticket:   INC\d{12}`, mail, "the Remedy ticket number is in the notification")

	amAlerts := func() string {
		resp, err := http.Get("http://" + amAddr + "/api/v2/alerts?active=true")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	require.Eventually(t, func() bool { return strings.Contains(amAlerts(), `"alertname":"SamdriftIncident"`) }, 10*time.Second, 200*time.Millisecond)

	// beta's incident shows the failure.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := get(c, "http://"+addr+"/api/v1/incidents", betaToken)
		assert.True(c, regexp.MustCompile(`"delivery_error":"[^"]*ARERR 48252`).MatchString(body))
	}, 10*time.Second, 200*time.Millisecond)
	require.Contains(t, samdriftMetrics(t, addr), `samdrift_ticketing_delivery_failures_total{backend="remedy"} 1`)

	// Resolution: notified, and the Alertmanager alert ends.
	require.Equal(t, http.StatusOK, postAlerts(t, addr, alphaToken, webhook("resolved", started, lbl)).code)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events["/oncall"]) == 2 && events["/oncall"][1] == "resolved:alpha"
	}, 30*time.Second, 200*time.Millisecond)
	require.Eventually(t, func() bool { return !strings.Contains(amAlerts(), "SamdriftIncident") }, 10*time.Second, 200*time.Millisecond)
	require.Len(t, smtpSrv.Mail(), 2)
}
