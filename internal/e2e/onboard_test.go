package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards"
	"github.com/samdrift/samdrift/dashboards/grafana/grafanasim"
	"github.com/samdrift/samdrift/ticketing/remedy/remedysim"
)

const adminToken = "onboarding-admin-token"

// onboardCatalogue has comments that onboarding must keep, an admin role,
// and agency alpha with data of its own.
func onboardCatalogue(extra string) string {
	return fmt.Sprintf(`# Agencies of the test provider.
# Keep this comment: onboarding edits the file in place.
provider: {name: Test provider, timezone: Europe/Stockholm}

roles:
  ops:
    credentials: [{name: noc, token_sha256: %s}]
  admin:
    credentials: [{name: onboarding, token_sha256: %s}]

agencies:
  # Alpha runs in production.
  - id: alpha
    name: Alpha
    phase: run
    credentials: [{name: alpha-cred, token_sha256: %s}]
    services: [{id: web, name: Web, tier: high}]
%s`, catalogue.HashToken(opsToken), catalogue.HashToken(adminToken), catalogue.HashToken(alphaToken), extra)
}

// cli runs the samdrift binary and returns its combined output, requiring
// the exit code.
func cli(t T, code int, args ...string) string {
	helper(t)
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	require.Equal(t, code, got, "samdrift %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func auditActions(t T, path string) []map[string]any {
	helper(t)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		out = append(out, e)
	}
	return out
}

func hasAudit(entries []map[string]any, action, agency, who string) bool {
	for _, e := range entries {
		if e["action"] == action && e["agency"] == agency && (who == "" || e["who"] == who) {
			return true
		}
	}
	return false
}

// TestOnboardPushOffboard: a running Samdrift takes a new agency from
// `samdrift agency onboard` without restart (data, rules and its Grafana
// organisation), meters it exactly, moves it through phases with an audit
// trail, reports on it, and offboards it: intake refused, export complete,
// data gone, alpha untouched.
func TestOnboardPushOffboard(t *testing.T) {
	t.Parallel()
	sim := grafanasim.New("admin", "gf-secret")
	gf := httptest.NewServer(sim)
	defer gf.Close()
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	pw := filepath.Join(dir, "gf-password")
	writeFile(t, pw, "gf-secret\n")
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, onboardCatalogue(fmt.Sprintf("\ngrafana:\n  url: %s\n  password_file: %s\n  datasource_url: %s/prometheus\n", gf.URL, pw, base)))
	cli(t, 0, "dashboards", "provision", "--config", cfg)
	auditLog := filepath.Join(dir, "audit.log")
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--audit-log", auditLog)

	now := time.Now()
	require.Equal(t, 204, pushRW(t, addr, alphaToken, ts(now, 7, "__name__", "e2e_alpha", "host", "a1")).code)
	before, err := os.ReadFile(cfg)
	require.NoError(t, err)

	// Onboard: the running Samdrift accepts the new credential within seconds.
	began := time.Now()
	out := cli(t, 0, "agency", "onboard", "--config", cfg, "--id", "digg", "--name", "Digital Government Agency",
		"--company", "DIGG", "--support-group", "Drift DIGG", "--service", "portal=Portal", "--probe", "portal="+base+"/-/healthy", "--tier", "high",
		"--wait", base, "--who", "e2e-tester")
	m := regexp.MustCompile(`token: (sd_\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	token := m[1]
	require.Contains(t, out, "accepts the new credential")
	const series, perSeries = 25, 4
	batch := func(name string) []prompb.TimeSeries {
		var b []prompb.TimeSeries
		for i := range series {
			s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: "host", Value: "h" + strconv.Itoa(i)}}}
			for j := range perSeries {
				s.Samples = append(s.Samples, prompb.Sample{Value: float64(j), Timestamp: now.Add(time.Duration(j-perSeries) * 10 * time.Second).UnixMilli()})
			}
			b = append(b, s)
		}
		return b
	}
	require.Equal(t, 204, pushRW(t, addr, token, batch("e2e_digg")...).code)
	countQ := `sum(count_over_time(e2e_digg[10m]))`
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, token, countQ)
		assert.True(c, len(v) == 1 && v[0].Value[1] == strconv.Itoa(series*perSeries))
	}, 10*time.Second, 100*time.Millisecond, "the new agency's data is queryable")
	t.Logf("onboard → data queryable in %.1fs", time.Since(began).Seconds())
	require.Empty(t, query(t, addr, token, `e2e_alpha`), "the new agency does not see alpha")
	require.Empty(t, query(t, addr, alphaToken, `e2e_digg`), "alpha does not see the new agency")

	// Its SLA rules are loaded.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, pr := api(c, addr, token, "/rules", nil)
		assert.True(c, code == 200 && strings.Contains(string(pr.Data), `service=\"portal\"`))
	}, 10*time.Second, 200*time.Millisecond, "the new agency's SLA rules run")

	// The catalogue kept its comments and alpha's entry, byte for byte.
	after, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(after), strings.Split(string(before), "\ngrafana:")[0]), "the file is only appended to:\n%s", after)
	require.Contains(t, string(after), "# Alpha runs in production.")
	require.NotContains(t, string(after), token, "only the token's hash is stored")
	acct, err := os.ReadFile(filepath.Join(dir, "nats-accounts", "digg.conf"))
	require.NoError(t, err)
	require.Contains(t, string(acct), `"ingest.metrics.nats.digg"`)
	natsPW := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, natsPW)
	require.NotContains(t, string(acct), natsPW[1], "the NATS password is stored as a bcrypt hash")

	// Its Grafana organisation sees its data alone.
	org := sim.OrgByName("Samdrift: Digital Government Agency (digg)")
	require.NotNil(t, org, "the agency's Grafana organisation; orgs: %v", sim.Orgs())
	gfToken := strings.TrimPrefix(org.Secure[dashboards.DatasourceUID]["httpHeaderValue1"], "Bearer ")
	v := query(t, addr, gfToken, `count({__name__=~"e2e_.+"})`)
	require.Len(t, v, 1)
	require.Equal(t, strconv.Itoa(series), v[0].Value[1], "the Grafana data source sees digg's series only")

	// Bad input: clear refusal, nothing changed.
	snapshot, _ := os.ReadFile(cfg)
	out = cli(t, 1, "agency", "onboard", "--config", cfg, "--id", "digg", "--name", "Again")
	require.Contains(t, out, `agency "digg" is already in`)
	out = cli(t, 1, "agency", "onboard", "--config", cfg, "--id", "ombud", "--name", "Ombudsman", "--company", "OM\tBUD")
	require.Contains(t, out, "contains control characters")
	require.NoFileExists(t, filepath.Join(dir, "nats-accounts", "ombud.conf"), "no partial state")
	out = cli(t, 1, "agency", "onboard", "--config", cfg, "--id", "ombud", "--name", "Ombudsman", "--service", "web")
	require.Contains(t, out, "want ID=NAME")
	unchanged, _ := os.ReadFile(cfg)
	require.Equal(t, string(snapshot), string(unchanged))

	// Phases are moved and audited.
	out = cli(t, 0, "agency", "phase", "--config", cfg, "digg", "run", "--who", "e2e-tester", "--audit-log", auditLog)
	require.Contains(t, out, "phase build → run")
	cli(t, 1, "agency", "phase", "--config", cfg, "ghost", "run", "--audit-log", auditLog)

	// Usage reconciles with what is stored: an agency that only pushes
	// (no probes) has exactly the samples counted that its TSDB holds.
	out = cli(t, 0, "agency", "onboard", "--config", cfg, "--id", "ombud", "--name", "Ombudsman", "--wait", base, "--no-nats-account")
	ombud := regexp.MustCompile(`token: (sd_\S+)`).FindStringSubmatch(out)[1]
	require.Equal(t, 204, pushRW(t, addr, ombud, batch("e2e_ombud")...).code)
	require.Equal(t, 204, pushRW(t, addr, ombud, ts(now, 1, "__name__", "e2e_ombud_extra")).code)
	const pushed = series*perSeries + 1
	storedQ := `sum(count_over_time({__name__=~".+"}[1h]))`
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v := query(c, addr, ombud, storedQ)
		assert.True(c, len(v) == 1 && v[0].Value[1] == strconv.Itoa(pushed))
	}, 10*time.Second, 100*time.Millisecond)
	month := time.Now().In(mustLoc(t, "Europe/Stockholm")).Format("2006-01")
	csvFile := filepath.Join(dir, "usage.csv")
	var rows [][]string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		out = cli(c, 0, "report", "usage", "--url", base, "--token", adminToken, "--month", month, "--csv", csvFile)
		f, err := os.Open(csvFile)
		require.NoError(c, err)
		defer f.Close()
		rows, err = csv.NewReader(f).ReadAll()
		require.NoError(c, err)
		assert.InDelta(c, float64(pushed), sumColumn(rows, "ombud", "samples_ingested"), 0)
	}, 10*time.Second, 500*time.Millisecond, "usage of ombud: %v", rows)
	v = query(t, addr, ombud, storedQ)
	require.Equal(t, strconv.Itoa(pushed), v[0].Value[1], "samples counted = samples stored")
	require.InDelta(t, 1.0, sumColumn(rows, "alpha", "samples_ingested"), 0)
	require.GreaterOrEqual(t, sumColumn(rows, "digg", "samples_ingested"), float64(series*perSeries), "digg's pushes (and probes, once they ran)")
	require.Contains(t, out, "onboarding project", "build-phase usage is marked apart:\n%s", out)
	for _, r := range rows[1:] {
		if r[1] == "ombud" {
			require.Equal(t, "build", r[2])
			require.Equal(t, "onboarding project", r[3])
			require.Equal(t, "0.0000", r[len(r)-1], "build-phase usage has no cost share")
		}
	}
	code, _ := get(t, base+"/api/v1/admin/usage?month="+month, token)
	require.Equal(t, http.StatusForbidden, code, "an agency cannot read usage")

	// The SLA report comes out; an agency cannot fetch another's.
	repDir := filepath.Join(dir, "reports")
	out = cli(t, 0, "report", "sla", "--url", base, "--token", adminToken, "--agency", "alpha", "--month", month, "--out", repDir, "--pdf", "never")
	html, err := os.ReadFile(filepath.Join(repDir, "sla-alpha-"+month+".html"))
	require.NoError(t, err, out)
	require.Contains(t, string(html), "SLA report "+month+": Alpha")
	code, body := get(t, base+"/api/v1/reports/sla?agency=alpha&month="+month, token)
	require.Equal(t, http.StatusNotFound, code, body)
	require.NotContains(t, body, "Alpha")
	code, _ = get(t, base+"/api/v1/reports/sla?month="+month, token)
	require.Equal(t, http.StatusOK, code, "an agency gets its own report")

	// Offboarding needs confirmation.
	exp := filepath.Join(dir, "export")
	snapshot, _ = os.ReadFile(cfg)
	out = cli(t, 2, "agency", "offboard", "--config", cfg, "digg", "--export", exp, "--url", base, "--token", adminToken)
	require.Contains(t, out, "--yes")
	unchanged, _ = os.ReadFile(cfg)
	require.Equal(t, string(snapshot), string(unchanged))
	require.Equal(t, 204, pushRW(t, addr, token, ts(time.Now(), 1, "__name__", "still_in")).code)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, query(c, addr, token, "still_in"), 1) }, 10*time.Second, 100*time.Millisecond)

	out = cli(t, 0, "agency", "offboard", "--config", cfg, "digg", "--yes", "--export", exp, "--url", base, "--token", adminToken, "--who", "e2e-tester", "--audit-log", auditLog)
	t.Log(out)
	// Intake refused, data and credentials gone, alpha untouched.
	r := pushRW(t, addr, token, ts(time.Now(), 1, "__name__", "after"))
	require.Contains(t, []int{401, 403}, r.code, r.body)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _ := api(c, addr, token, "/query", nil)
		assert.Equal(c, http.StatusUnauthorized, code)
	}, 10*time.Second, 100*time.Millisecond)
	require.Empty(t, query(t, addr, opsToken, `e2e_digg`), "digg's data is gone")
	require.Len(t, query(t, addr, opsToken, `e2e_ombud`), series, "other agencies' data is untouched")
	require.Len(t, query(t, addr, alphaToken, `e2e_alpha`), 1)
	var info struct {
		Data struct {
			InCatalogue bool `json:"in_catalogue"`
			HasData     bool `json:"has_data"`
		} `json:"data"`
	}
	code, body = get(t, base+"/api/v1/admin/agencies/digg", adminToken)
	require.Equal(t, 200, code)
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	require.False(t, info.Data.InCatalogue)
	require.False(t, info.Data.HasData)
	final, _ := os.ReadFile(cfg)
	require.NotContains(t, string(final), "digg")
	require.Contains(t, string(final), "# Alpha runs in production.")
	require.NoFileExists(t, filepath.Join(dir, "nats-accounts", "digg.conf"))
	require.Nil(t, sim.OrgByName("Samdrift: Digital Government Agency (digg)"), "its Grafana organisation is deleted")

	// The export is complete: every sample and the incidents file.
	dirs, err := filepath.Glob(filepath.Join(exp, "samdrift-digg-*"))
	require.NoError(t, err)
	var unpacked string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			unpacked = d
		}
	}
	require.NotEmpty(t, unpacked, "export dir: %v", dirs)
	require.FileExists(t, filepath.Join(unpacked, "incidents.json"))
	require.Equal(t, series*perSeries+1, countSamples(t, filepath.Join(unpacked, "tsdb"), "e2e_digg", "still_in"))

	entries := auditActions(t, auditLog)
	for _, a := range []string{"agency_onboarded", "agency_phase", "agency_exported", "agency_data_deleted", "agency_offboarded"} {
		require.True(t, hasAudit(entries, a, "digg", ""), "audit %s missing: %v", a, entries)
	}
	require.True(t, hasAudit(entries, "agency_onboarded", "digg", "e2e-tester"))
	require.True(t, hasAudit(entries, "cross_agency_denied", "digg", ""), "the denied report request is audited")
}

func mustLoc(t *testing.T, name string) *time.Location {
	l, err := time.LoadLocation(name)
	require.NoError(t, err)
	return l
}

func sumColumn(rows [][]string, agency, col string) float64 {
	if len(rows) == 0 {
		return -1
	}
	idx := -1
	for i, c := range rows[0] {
		if c == col {
			idx = i
		}
	}
	sum := 0.0
	for _, r := range rows[1:] {
		if r[1] == agency {
			v, _ := strconv.ParseFloat(r[idx], 64)
			sum += v
		}
	}
	return sum
}

// countSamples opens an exported TSDB read-only and counts the samples of
// the named metrics.
func countSamples(t T, dir string, names ...string) int {
	helper(t)
	db, err := tsdb.OpenDBReadOnly(dir, "", nil)
	require.NoError(t, err)
	defer db.Close()
	q, err := db.Querier(0, time.Now().Add(time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	n := 0
	for _, name := range names {
		ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
		for ss.Next() {
			it := ss.At().Iterator(nil)
			for it.Next() != 0 {
				n++
			}
		}
		require.NoError(t, ss.Err())
	}
	return n
}

// TestOnboardChecksRemedyCompany: with the Remedy backend, a company
// Remedy does not know is refused before anything is written.
func TestOnboardChecksRemedyCompany(t *testing.T) {
	t.Parallel()
	sim := remedysim.New(remedysim.Options{Users: []remedysim.User{{Name: "samdrift-integration", Password: "pw", Companies: []string{"*"}}},
		Companies: []string{"ALPHA", "DIGG"}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	dir := t.TempDir()
	pw := filepath.Join(dir, "remedy-password")
	writeFile(t, pw, "pw\n")
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, strings.Replace(onboardCatalogue(""), "    phase: run\n", "    phase: run\n    remedy: {company: ALPHA}\n", 1)+fmt.Sprintf("\nticketing:\n  backend: remedy\n  remedy:\n    url: %s\n    username: samdrift-integration\n    password_file: %s\n", srv.URL, pw))
	before, _ := os.ReadFile(cfg)
	out := cli(t, 1, "agency", "onboard", "--config", cfg, "--id", "ombud", "--name", "Ombudsman", "--company", "OMBUDSMAN")
	require.Contains(t, out, `has no company "OMBUDSMAN"`)
	require.Contains(t, out, "Nothing was changed.")
	after, _ := os.ReadFile(cfg)
	require.Equal(t, string(before), string(after))
	require.NoFileExists(t, filepath.Join(dir, "nats-accounts", "ombud.conf"))

	out = cli(t, 0, "agency", "onboard", "--config", cfg, "--id", "digg", "--name", "DIGG", "--company", "DIGG", "--phase", "run")
	require.Contains(t, out, "Onboarded agency digg")
	c, err := catalogue.LoadFile(cfg)
	require.NoError(t, err)
	require.Equal(t, "DIGG", c.Agency("digg").Remedy.Company)

	// A services file in the catalogue's format.
	svc := filepath.Join(dir, "services.yaml")
	writeFile(t, svc, "services:\n  - id: cases\n    name: Case handling\n    tier: critical\n    sla: {availability: 99.9, service_hours: \"Mon-Fri 08:00-17:00\"}\n    probes: [{http: \"https://ombud.example/health\"}]\n")
	sim2Companies := "ALPHA" // the company check can be skipped where Remedy is not yet set up
	out = cli(t, 0, "agency", "onboard", "--config", cfg, "--id", "ombud", "--name", "Ombudsman", "--company", sim2Companies, "--services", svc, "--skip-remedy-check", "--no-nats-account")
	c, err = catalogue.LoadFile(cfg)
	require.NoError(t, err, out)
	require.InDelta(t, 99.9, c.Agency("ombud").Service("cases").SLA.Availability, 1e-9)
	require.NoFileExists(t, filepath.Join(dir, "nats-accounts", "ombud.conf"))

	// An invalid service in the file: refused with the reason, nothing written.
	writeFile(t, svc, "- id: web\n  name: Web\n  tier: gold\n")
	before, _ = os.ReadFile(cfg)
	out = cli(t, 1, "agency", "onboard", "--config", cfg, "--id", "pension", "--name", "Pensions", "--services", svc, "--skip-remedy-check")
	require.Contains(t, out, `tier "gold" must be one of`)
	after, _ = os.ReadFile(cfg)
	require.Equal(t, string(before), string(after))
	require.NoFileExists(t, filepath.Join(dir, "nats-accounts", "pension.conf"), "the NATS account is undone")
}
