package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/testutil"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/notify"
)

func inc(event, priority string) *ticketing.Incident {
	return &ticketing.Incident{
		ID: "SD-1", Agency: "alpha", Service: "web", AlertName: "Down", State: ticketing.StateOpen, Priority: priority,
		Summary: "Web är nere", Ticket: "INC000000000007", Version: 3, LastEvent: event, OpenedAt: time.Unix(1700000000, 0),
		Annotations: map[string]string{"dashboard": "http://s/agency/alpha#web", "runbook_url": "http://s/runbooks#down"},
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		route catalogue.NotificationRoute
		inc   *ticketing.Incident
		want  bool
	}{
		{"default events: opened", catalogue.NotificationRoute{}, inc("opened", "Low"), true},
		{"default events: no updates", catalogue.NotificationRoute{}, inc("updated", "Critical"), false},
		{"agency filter", catalogue.NotificationRoute{Agencies: []string{"beta"}}, inc("opened", "High"), false},
		{"service filter", catalogue.NotificationRoute{Services: []string{"web"}}, inc("resolved", "High"), true},
		{"min priority met", catalogue.NotificationRoute{MinPriority: "High"}, inc("opened", "Critical"), true},
		{"min priority not met", catalogue.NotificationRoute{MinPriority: "High"}, inc("opened", "Medium"), false},
		{"delivery failures on request", catalogue.NotificationRoute{Events: []string{"delivery_failed"}}, inc("delivery_failed", "Low"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.route.Name = "r"
			r, err := notify.NewRoute(&tc.route, "http://s")
			require.NoError(t, err)
			require.Equal(t, tc.want, r.Matches(tc.inc))
		})
	}
}

func TestReceivers(t *testing.T) {
	var mu sync.Mutex
	var hooks []*http.Request
	var bodies []notify.Notification
	var amAlerts []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/api/v2/alerts" {
			var as []map[string]any
			require.NoError(t, json.Unmarshal(b, &as))
			amAlerts = append(amAlerts, as...)
			return
		}
		var n notify.Notification
		require.NoError(t, json.Unmarshal(b, &n))
		hooks = append(hooks, r)
		bodies = append(bodies, n)
	}))
	defer srv.Close()
	smtpSrv, err := testutil.NewSMTPServer()
	require.NoError(t, err)
	defer smtpSrv.Close()

	r, err := notify.NewRoute(&catalogue.NotificationRoute{
		Name:         "oncall",
		Webhook:      &catalogue.WebhookReceiver{URL: srv.URL + "/hook"},
		Email:        &catalogue.EmailReceiver{To: []string{"noc@agency.example"}, From: "samdrift@provider.example", Smarthost: smtpSrv.Addr()},
		Alertmanager: &catalogue.AlertmanagerReceiver{URL: srv.URL},
	}, "http://samdrift.example")
	require.NoError(t, err)
	_, err = r.Deliver(context.Background(), inc("opened", "Critical"))
	require.NoError(t, err)
	_, err = r.Deliver(context.Background(), inc("updated", "Critical"))
	require.NoError(t, err, "not matched: nothing sent")

	mu.Lock()
	require.Len(t, bodies, 1)
	require.Equal(t, "opened", bodies[0].Event)
	require.Equal(t, "INC000000000007", bodies[0].Incident.Ticket)
	require.Equal(t, "http://samdrift.example/api/v1/incidents/SD-1", bodies[0].Links.Incident)
	require.Equal(t, "SD-1-3-opened", hooks[0].Header.Get("Idempotency-Key"))
	require.Len(t, amAlerts, 1)
	require.Equal(t, "SamdriftIncident", amAlerts[0]["labels"].(map[string]any)["alertname"])
	mu.Unlock()

	mail := smtpSrv.Mail()
	require.Len(t, mail, 1)
	require.Equal(t, []string{"noc@agency.example"}, mail[0].To)
	require.Contains(t, mail[0].Data, "Subject: =?utf-8?q?")
	require.Contains(t, mail[0].Data, "Priority: Critical")
	require.Contains(t, mail[0].Data, "Ticket:   INC000000000007")

	// A receiver that is down: temporary, retried by the outbox.
	srv.Close()
	_, err = r.Deliver(context.Background(), inc("resolved", "Critical"))
	var tmp *ticketing.TemporaryError
	require.ErrorAs(t, err, &tmp)
	require.ErrorContains(t, err, "webhook")
}

// TestHostileAlertText: an agency's alert text cannot add headers or a
// forged body to the provider's on-call mail, and only http(s) links reach
// people.
func TestHostileAlertText(t *testing.T) {
	smtpSrv, err := testutil.NewSMTPServer()
	require.NoError(t, err)
	defer smtpSrv.Close()
	r, err := notify.NewRoute(&catalogue.NotificationRoute{
		Name:  "oncall",
		Email: &catalogue.EmailReceiver{To: []string{"noc@provider.example"}, From: "samdrift@provider.example", Smarthost: smtpSrv.Addr()},
	}, "http://samdrift.example")
	require.NoError(t, err)
	evil := inc("opened", "Critical")
	evil.Summary = "Disk full\r\nBcc: attacker@evil.example\r\n\r\nPlease log in at http://evil.example"
	evil.Annotations = map[string]string{"dashboard": "javascript:alert(1)", "runbook_url": "https://runbooks.example/disk\r\nX-Evil: 1"}
	_, err = r.Deliver(context.Background(), evil)
	require.NoError(t, err)
	mail := smtpSrv.Mail()
	require.Len(t, mail, 1)
	headers, body, ok := strings.Cut(mail[0].Data, "\r\n\r\n")
	require.True(t, ok)
	// Every header line is one of ours: alert text cannot start one.
	for _, h := range strings.Split(headers, "\r\n") {
		require.Regexp(t, `^(From|To|Subject|MIME-Version|Content-Type|Content-Transfer-Encoding): `, h)
	}
	require.Equal(t, []string{"noc@provider.example"}, mail[0].To, "no recipient added")
	require.NotContains(t, body, "javascript:")
	require.NotContains(t, body, "Runbook:", "a link with a line break is dropped")
	require.Contains(t, body, "Summary:  Disk full  Bcc: attacker@evil.example    Please log in", "the text stays on its line")

	b := r.Build(evil)
	require.Empty(t, b.Links.Dashboard)
	require.Empty(t, b.Links.Runbook)
	ok2 := inc("opened", "Critical")
	ok2.Annotations = map[string]string{"runbook_url": "https://runbooks.example/disk"}
	require.Equal(t, "https://runbooks.example/disk", r.Build(ok2).Links.Runbook)
}

// TestStalledMailServer: a mail server that accepts the connection and
// never answers costs a bounded wait, then a temporary error.
func TestStalledMailServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	r, err := notify.NewRoute(&catalogue.NotificationRoute{
		Name:  "oncall",
		Email: &catalogue.EmailReceiver{To: []string{"noc@provider.example"}, From: "samdrift@provider.example", Smarthost: ln.Addr().String()},
	}, "http://samdrift.example")
	require.NoError(t, err)
	notify.SetSMTPTimeout(t, 300*time.Millisecond)
	done := make(chan error, 1)
	go func() { _, err := r.Deliver(context.Background(), inc("opened", "Critical")); done <- err }()
	select {
	case err := <-done:
		var tmp *ticketing.TemporaryError
		require.ErrorAs(t, err, &tmp)
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled mail server blocked the delivery")
	}
}
