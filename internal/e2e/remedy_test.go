package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// remedyCatalogue is pushCatalogue with the Remedy backend at url.
func remedyCatalogue(url, pwFile string) string {
	c := strings.Replace(pushCatalogue(), "  - id: alpha\n    name: Alpha\n    phase: run\n", "  - id: alpha\n    name: Alpha\n    phase: run\n    remedy: {company: ALPHA, support_company: Provider, support_organization: IT-drift, assigned_group: Drift ALPHA}\n", 1)
	c = strings.Replace(c, "  - id: beta\n    name: Beta\n    phase: run\n", "  - id: beta\n    name: Beta\n    phase: run\n    remedy: {company: BETA, assigned_group: Drift BETA}\n", 1)
	return c + fmt.Sprintf("ticketing:\n  backend: remedy\n  remedy:\n    url: %s\n    username: samdrift-integration\n    password_file: %s\n", url, pwFile)
}

// TestRemedyBackend: samdrift run with the Remedy backend pointed at the
// `samdrift remedy-sim` process, over HTTP as against a real server.
func TestRemedyBackend(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	simAddr := freeAddr(t)
	cfg := filepath.Join(dir, "catalogue.yaml")
	pw := filepath.Join(dir, "remedy-password")
	writeFile(t, pw, "s3cret\n")
	writeFile(t, cfg, remedyCatalogue("http://"+simAddr, pw))
	sim := exec.Command(binary, "remedy-sim", "--addr", simAddr, "--config", cfg, "--password", "s3cret")
	simLogs := &syncBuffer{}
	sim.Stdout, sim.Stderr = simLogs, simLogs
	require.NoError(t, sim.Start())
	t.Cleanup(func() { _ = sim.Process.Kill(); _ = sim.Wait() })
	require.Eventually(t, func() bool { return strings.Contains(simLogs.String(), "alpha-agent") }, 10*time.Second, 50*time.Millisecond)

	// Wrong credentials: a clear error and no start.
	bad := filepath.Join(dir, "bad.yaml")
	badPw := filepath.Join(dir, "bad-password")
	writeFile(t, badPw, "nope")
	writeFile(t, bad, remedyCatalogue("http://"+simAddr, badPw))
	out, err := exec.Command(binary, "run", "--config", bad, "--data-dir", filepath.Join(dir, "bad-data"), "--http.addr", freeAddr(t)).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "remedy refused the login")

	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	r := postAlerts(t, addr, alphaToken, webhook("firing", time.Now().Add(-time.Minute), map[string]string{"alertname": "DiskFull", "service": "web", "severity": "critical"}))
	require.Equal(t, http.StatusOK, r.code, r.body)

	entries := func(user string) []map[string]any {
		resp, err := http.PostForm("http://"+simAddr+"/api/jwt/login", url.Values{"username": {user}, "password": {"s3cret"}})
		require.NoError(t, err)
		tok, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		req, _ := http.NewRequest(http.MethodGet, "http://"+simAddr+"/api/arsys/v1/entry/HPD:IncidentInterface", nil)
		req.Header.Set("Authorization", "AR-JWT "+string(tok))
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct {
			Entries []struct {
				Values map[string]any `json:"values"`
			} `json:"entries"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		var out []map[string]any
		for _, e := range body.Entries {
			out = append(out, e.Values)
		}
		return out
	}
	var got []map[string]any
	require.Eventually(t, func() bool { got = entries("alpha-agent"); return len(got) == 1 }, 20*time.Second, 200*time.Millisecond)
	require.Equal(t, "ALPHA", got[0]["Company"])
	require.Equal(t, "Drift ALPHA", got[0]["Assigned Group"])
	require.Equal(t, "1-Critical", got[0]["Urgency"])
	require.Empty(t, entries("beta-agent"), "beta's agent sees nothing of alpha")

	// The incident API shows the Remedy number.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := get(c, "http://"+addr+"/api/v1/incidents", alphaToken)
		assert.True(c, regexp.MustCompile(`"ticket":"INC\d{12}"`).MatchString(body))
	}, 10*time.Second, 200*time.Millisecond)

	// Resolution reaches Remedy.
	r = postAlerts(t, addr, alphaToken, webhook("resolved", time.Now().Add(-time.Minute), map[string]string{"alertname": "DiskFull", "service": "web", "severity": "critical"}))
	require.Equal(t, http.StatusOK, r.code)
	require.Eventually(t, func() bool {
		got = entries("alpha-agent")
		return len(got) == 1 && got[0]["Status"] == "Resolved"
	}, 20*time.Second, 200*time.Millisecond)
}
