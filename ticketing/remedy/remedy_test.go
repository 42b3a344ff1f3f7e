package remedy_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/remedy"
	"github.com/samdrift/samdrift/ticketing/remedy/remedysim"
)

func newSim(t *testing.T, o remedysim.Options) (*remedysim.Sim, string) {
	if o.Users == nil {
		o.Users = []remedysim.User{
			{Name: "samdrift", Password: "pw", Companies: []string{"*"}},
			{Name: "alpha-only", Password: "pw", Companies: []string{"ALPHA"}},
		}
	}
	if o.Companies == nil {
		o.Companies = []string{"ALPHA", "BETA", "Provider IT"}
	}
	sim := remedysim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func client(url, user string) *remedy.Client {
	return remedy.New(remedy.Config{URL: url, Username: user, Password: "pw", FirstName: "Samdrift", LastName: "Integration", ExternalURL: "http://samdrift.test"})
}

func incident(agency, company string) *ticketing.Incident {
	now := time.Now()
	return &ticketing.Incident{
		ID: ticketing.NewID(now), Key: agency + "/web/Down", Agency: agency, Service: "web", AlertName: "Down",
		Company: company, SupportCompany: "Provider IT", SupportOrganization: "IT-drift", SupportGroup: "Drift " + company,
		State: ticketing.StateOpen, OpenedAt: now, Severity: "critical", Tier: "high", Impact: 2, Urgency: 1, Priority: "Critical",
		Summary: "Web of " + agency + " is down", Description: "It does not answer.", Count: 1, Version: 1,
		Labels:      map[string]string{"alertname": "Down", "agency": agency, "service": "web"},
		Annotations: map[string]string{"runbook_url": "http://samdrift.test/runbooks#down", "dashboard": "http://samdrift.test/agency/" + agency},
		WorkLog:     []ticketing.WorkLogEntry{{At: now, Author: "samdrift", Text: "Opened."}},
	}
}

func TestCreateUpdateResolveReopen(t *testing.T) {
	sim, url := newSim(t, remedysim.Options{})
	c := client(url, "samdrift")
	ctx := context.Background()
	require.NoError(t, c.Login(ctx))
	inc := incident("alpha", "ALPHA")
	inc.Summary = strings.Repeat("å", 120) // longer than the field, multi-byte

	before := sim.Requests()
	num, err := c.Deliver(ctx, inc)
	require.NoError(t, err)
	require.Regexp(t, `^INC\d{12}$`, num)
	require.Equal(t, 3, sim.Requests()-before, "a new incident costs a search, the create and its work log entry")
	require.Len(t, sim.Entries(remedysim.FormWorkLog), 1)
	es := sim.Entries(remedysim.FormIncident)
	require.Len(t, es, 1)
	e := es[0]
	for k, want := range map[string]string{
		"Company": "ALPHA", "Assigned Support Company": "Provider IT", "Assigned Support Organization": "IT-drift",
		"Assigned Group": "Drift ALPHA", "Impact": "2-Significant/Large", "Urgency": "1-Critical", "Status": "Assigned",
		"Reported Source": "Systems Management", "Service_Type": "Infrastructure Event", "First_Name": "Samdrift",
		"Last_Name": "Integration", "Vendor Ticket Number": inc.ID,
	} {
		require.Equal(t, want, e[k], k)
	}
	require.Equal(t, strings.Repeat("å", 99)+"…", e["Description"], "truncated to 100 characters on a rune boundary")
	for _, part := range []string{"Agency: alpha", "Runbook: http://samdrift.test/runbooks#down", "Dashboard: http://samdrift.test/agency/alpha", "alertname=Down"} {
		require.Contains(t, e["Detailed_Decription"], part)
	}
	require.Len(t, sim.Entries(remedysim.FormWorkLog), 1)

	// A retry of the same version (a crash before the state was saved)
	// finds the ticket: still one.
	again, err := c.Deliver(ctx, inc)
	require.NoError(t, err)
	require.Equal(t, num, again)
	require.Len(t, sim.Entries(remedysim.FormIncident), 1)
	require.Len(t, sim.Entries(remedysim.FormWorkLog), 1, "work log entries are not repeated")

	// Escalation and a work log entry.
	inc.Version, inc.Urgency = 2, 1
	inc.Impact = 1
	inc.WorkLog = append(inc.WorkLog, ticketing.WorkLogEntry{At: time.Now(), Author: "samdrift", Text: "Escalated."})
	_, err = c.Deliver(ctx, inc)
	require.NoError(t, err)
	require.Equal(t, "1-Extensive/Widespread", sim.Entries(remedysim.FormIncident)[0]["Impact"])
	require.Len(t, sim.Entries(remedysim.FormWorkLog), 2)

	// Resolve.
	inc.Version, inc.State, inc.ResolvedAt = 3, ticketing.StateResolved, time.Now()
	_, err = c.Deliver(ctx, inc)
	require.NoError(t, err)
	e = sim.Entries(remedysim.FormIncident)[0]
	require.Equal(t, "Resolved", e["Status"])
	require.Equal(t, "Automated Resolution Reported", e["Status_Reason"])
	require.Contains(t, e["Resolution"], "Resolved by Samdrift")

	// Reopen within the window: the same ticket goes back to Assigned.
	inc.Version, inc.State, inc.Reopened = 4, ticketing.StateOpen, 1
	_, err = c.Deliver(ctx, inc)
	require.NoError(t, err)
	require.Equal(t, "Assigned", sim.Entries(remedysim.FormIncident)[0]["Status"])

	// A person closes it: Samdrift never touches it again; opening again
	// makes a follow-up ticket.
	require.True(t, sim.SetStatus(num, "Closed"))
	inc.Version = 5
	inc.State = ticketing.StateResolved
	_, err = c.Deliver(ctx, inc)
	require.NoError(t, err)
	require.Equal(t, "Closed", sim.Entries(remedysim.FormIncident)[0]["Status"])
	inc.Version, inc.State = 6, ticketing.StateOpen
	follow, err := c.Deliver(ctx, inc)
	require.NoError(t, err)
	require.NotEqual(t, num, follow)
	es = sim.Entries(remedysim.FormIncident)
	require.Len(t, es, 2)
	require.Equal(t, "Closed", es[0]["Status"])
	require.Equal(t, inc.ID+"-2", es[1]["Vendor Ticket Number"])
}

func TestTokenExpiryAndRelogin(t *testing.T) {
	sim, url := newSim(t, remedysim.Options{})
	c := client(url, "samdrift")
	ctx := context.Background()
	_, err := c.Deliver(ctx, incident("alpha", "ALPHA"))
	require.NoError(t, err)
	require.Equal(t, 1, sim.Logins())
	sim.ExpireTokens() // mid-run, as when the server restarts or the JWT times out
	_, err = c.Deliver(ctx, incident("alpha", "ALPHA"))
	require.NoError(t, err)
	require.Equal(t, 2, sim.Logins())

	// The client also logs in again before the token's lifetime ends.
	now := time.Now()
	c2 := remedy.New(remedy.Config{URL: url, Username: "samdrift", Password: "pw", TokenTTL: time.Hour, Now: func() time.Time { return now }})
	require.NoError(t, c2.Login(ctx))
	now = now.Add(61 * time.Minute)
	_, err = c2.Deliver(ctx, incident("beta", "BETA"))
	require.NoError(t, err)
	require.Equal(t, 4, sim.Logins())
}

func TestErrors(t *testing.T) {
	sim, url := newSim(t, remedysim.Options{})
	ctx := context.Background()

	// Wrong credentials: a clear error at startup, not a retry loop.
	err := remedy.New(remedy.Config{URL: url, Username: "samdrift", Password: "wrong"}).Login(ctx)
	require.ErrorIs(t, err, remedy.ErrLogin)
	require.Contains(t, err.Error(), "ARERR 623: Authentication failed")

	c := client(url, "samdrift")
	// A company Remedy does not know: permanent, with AR's message.
	_, err = c.Deliver(ctx, incident("ghost", "GHOST"))
	var arErr *remedy.ARError
	require.ErrorAs(t, err, &arErr)
	var tmp *ticketing.TemporaryError
	require.NotErrorAs(t, err, &tmp, "validation errors are permanent")
	require.Contains(t, err.Error(), "ARERR 48252")

	// A field over its length (support group): permanent.
	inc := incident("alpha", "ALPHA")
	inc.SupportGroup = strings.Repeat("x", 61)
	_, err = c.Deliver(ctx, inc)
	require.ErrorAs(t, err, &arErr)
	require.Contains(t, err.Error(), "ARERR 306")

	// Outage: temporary.
	sim.SetDown(true)
	_, err = c.Deliver(ctx, incident("alpha", "ALPHA"))
	require.ErrorAs(t, err, &tmp)
	sim.SetDown(false)
}

func TestRateLimited(t *testing.T) {
	_, url := newSim(t, remedysim.Options{Rate: 1, Burst: 3})
	c := client(url, "samdrift")
	ctx := context.Background()
	var tmp *ticketing.TemporaryError
	var err error
	for range 5 {
		if _, err = c.Deliver(ctx, incident("alpha", "ALPHA")); err != nil {
			break
		}
	}
	require.ErrorAs(t, err, &tmp)
	require.GreaterOrEqual(t, tmp.RetryAfter, time.Second, "Retry-After is passed on")
	require.Contains(t, err.Error(), "HTTP 429")
}

// TestPacedUnderQuota: with max_requests_per_second under the server's
// quota, a run of deliveries never meets a 429.
func TestPacedUnderQuota(t *testing.T) {
	sim, url := newSim(t, remedysim.Options{Rate: 50, Burst: 2})
	c := remedy.New(remedy.Config{URL: url, Username: "samdrift", Password: "pw", FirstName: "S", LastName: "I", MaxRequestsPerSecond: 40})
	ctx := context.Background()
	for range 10 {
		_, err := c.Deliver(ctx, incident("alpha", "ALPHA"))
		require.NoError(t, err)
	}
	require.Zero(t, sim.Throttled())
	require.Len(t, sim.Entries(remedysim.FormIncident), 10)
}

func TestMultiCompany(t *testing.T) {
	sim, url := newSim(t, remedysim.Options{})
	ctx := context.Background()
	admin := client(url, "samdrift")
	_, err := admin.Deliver(ctx, incident("alpha", "ALPHA"))
	require.NoError(t, err)
	_, err = admin.Deliver(ctx, incident("beta", "BETA"))
	require.NoError(t, err)
	var companies []string
	for _, e := range sim.Entries(remedysim.FormIncident) {
		companies = append(companies, e["Company"].(string))
	}
	require.ElementsMatch(t, []string{"ALPHA", "BETA"}, companies)

	// alpha's own integration user can neither see nor write beta's.
	alphaOnly := client(url, "alpha-only")
	_, err = alphaOnly.Deliver(ctx, incident("beta", "BETA"))
	require.ErrorContains(t, err, "write access")
	betaInc := sim.Entries(remedysim.FormIncident)[1]
	// Searching for beta's key as alpha finds nothing, so alpha's user would
	// create, and is refused: nothing of beta leaks to it.
	require.NotEqual(t, "ALPHA", betaInc["Company"])
}

func TestCompanyExists(t *testing.T) {
	_, url := newSim(t, remedysim.Options{})
	c := client(url, "samdrift")
	ctx := context.Background()
	for company, want := range map[string]bool{"ALPHA": true, "Provider IT": true, "GAMMA": false, `ALPHA" OR 'Company' != "`: false} {
		ok, err := c.CompanyExists(ctx, company)
		require.NoError(t, err, company)
		require.Equal(t, want, ok, company)
	}
	// A user restricted to one company sees only that one.
	ok, err := client(url, "alpha-only").CompanyExists(ctx, "BETA")
	require.NoError(t, err)
	require.False(t, ok)
}
