// Package notify tells on-call engineers about incidents: when an incident
// opens, escalates, reopens or resolves (and when a ticket backend refuses
// one), every matching route of the catalogue sends it to its receivers — a
// JSON webhook, e-mail over SMTP, or an existing Alertmanager's v2 API. A
// route is a ticketing backend of its own: its notifications go through the
// durable outbox, with its retries, and are never lost.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/ticketing"
)

// DefaultEvents are notified when a route lists none.
var DefaultEvents = []string{ticketing.EventOpened, ticketing.EventEscalated, ticketing.EventReopened, ticketing.EventResolved}

var priorityRank = map[string]int{"Critical": 1, "High": 2, "Medium": 3, "Low": 4}

// Notification is what receivers get (the webhook's JSON body).
type Notification struct {
	Version  string   `json:"version"`
	Event    string   `json:"event"`
	Incident Incident `json:"incident"`
	Links    Links    `json:"links"`
}

// Incident is the notified part of an incident.
type Incident struct {
	ID            string    `json:"id"`
	Agency        string    `json:"agency"`
	Service       string    `json:"service"`
	AlertName     string    `json:"alertname"`
	State         string    `json:"state"`
	Priority      string    `json:"priority"`
	Summary       string    `json:"summary"`
	Description   string    `json:"description,omitempty"`
	Ticket        string    `json:"ticket,omitempty"`
	Company       string    `json:"company,omitempty"`
	Queue         string    `json:"queue"`
	Count         int       `json:"count"`
	OpenedAt      time.Time `json:"opened_at"`
	ResolvedAt    time.Time `json:"resolved_at,omitzero"`
	DeliveryError string    `json:"delivery_error,omitempty"`
}

// Links point people at the incident.
type Links struct {
	Incident  string `json:"incident"`
	Dashboard string `json:"dashboard,omitempty"`
	Runbook   string `json:"runbook,omitempty"`
}

// Route is one notification route; it implements ticketing.Backend.
type Route struct {
	cfg         *catalogue.NotificationRoute
	externalURL string
	http        *http.Client
	token       string
	smtpPass    string
	// only, if set, limits delivery to one receiver kind (see Receivers).
	only string
}

// Receivers splits a route into one backend per receiver (webhook, email,
// alertmanager), named <route>-<kind>: each gets its own outbox consumer,
// so one receiver being down neither delays nor repeats the others.
func (r *Route) Receivers() map[string]*Route {
	out := map[string]*Route{}
	for kind, set := range map[string]bool{"webhook": r.cfg.Webhook != nil, "email": r.cfg.Email != nil, "alertmanager": r.cfg.Alertmanager != nil} {
		if set {
			c := *r
			c.only = kind
			out[r.cfg.Name+"-"+kind] = &c
		}
	}
	return out
}

// NewRoute prepares a route, reading its secrets.
func NewRoute(cfg *catalogue.NotificationRoute, externalURL string) (*Route, error) {
	r := &Route{cfg: cfg, externalURL: strings.TrimSuffix(externalURL, "/"), http: &http.Client{Timeout: 15 * time.Second}}
	if cfg.Webhook != nil && cfg.Webhook.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.Webhook.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("notification route %q: %w", cfg.Name, err)
		}
		r.token = strings.TrimSpace(string(b))
	}
	if cfg.Email != nil && cfg.Email.PasswordFile != "" {
		pw, err := catalogue.ReadSecret("", cfg.Email.PasswordFile, "notification route "+cfg.Name+": smtp password")
		if err != nil {
			return nil, err
		}
		r.smtpPass = pw
	}
	return r, nil
}

// Name is the route's name.
func (r *Route) Name() string { return r.cfg.Name }

// Matches reports whether the route wants this incident's latest event.
func (r *Route) Matches(inc *ticketing.Incident) bool {
	events := r.cfg.Events
	if len(events) == 0 {
		events = DefaultEvents
	}
	if !slices.Contains(events, inc.LastEvent) {
		return false
	}
	if len(r.cfg.Agencies) > 0 && !slices.Contains(r.cfg.Agencies, inc.Agency) {
		return false
	}
	if len(r.cfg.Services) > 0 && !slices.Contains(r.cfg.Services, inc.Service) {
		return false
	}
	if r.cfg.MinPriority != "" && priorityRank[inc.Priority] > priorityRank[r.cfg.MinPriority] {
		return false
	}
	return true
}

// Build makes the notification of an incident's latest event.
func (r *Route) Build(inc *ticketing.Incident) Notification {
	return Notification{
		Version: "1",
		Event:   inc.LastEvent,
		Incident: Incident{
			ID: inc.ID, Agency: inc.Agency, Service: inc.Service, AlertName: inc.AlertName, State: inc.State,
			Priority: inc.Priority, Summary: inc.Summary, Description: inc.Description, Ticket: inc.Ticket,
			Company: inc.Company, Queue: inc.Queue, Count: inc.Count, OpenedAt: inc.OpenedAt, ResolvedAt: inc.ResolvedAt,
			DeliveryError: inc.DeliveryError,
		},
		Links: Links{
			Incident: r.externalURL + "/api/v1/incidents/" + inc.ID,
			// The annotations come from the agency's alerts: only
			// http(s) links reach people.
			Dashboard: safeLink(inc.Annotations["dashboard"]),
			Runbook:   safeLink(inc.Annotations["runbook_url"]),
		},
	}
}

// Deliver sends the incident's latest event to every receiver of the route,
// if it matches. Webhook receivers get an Idempotency-Key to drop repeats.
func (r *Route) Deliver(ctx context.Context, inc *ticketing.Incident) (string, error) {
	if !r.Matches(inc) {
		return "", nil
	}
	n := r.Build(inc)
	key := fmt.Sprintf("%s-%d-%s", inc.ID, inc.Version, inc.LastEvent)
	if w := r.cfg.Webhook; w != nil && r.wants("webhook") {
		if err := r.webhook(ctx, w, n, key); err != nil {
			return "", err
		}
	}
	if am := r.cfg.Alertmanager; am != nil && r.wants("alertmanager") {
		if err := r.alertmanager(ctx, am, n); err != nil {
			return "", err
		}
	}
	if e := r.cfg.Email; e != nil && r.wants("email") {
		if err := r.email(e, n); err != nil {
			return "", err
		}
	}
	return "", nil
}

func (r *Route) wants(kind string) bool { return r.only == "" || r.only == kind }

// httpError classifies an HTTP answer: 5xx and 429 are temporary.
func httpError(what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err := fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, strings.TrimSpace(string(b)))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		var after time.Duration
		if s, e := strconv.Atoi(resp.Header.Get("Retry-After")); e == nil {
			after = time.Duration(s) * time.Second
		}
		return ticketing.Temporary(err, after)
	}
	return err
}

func (r *Route) post(ctx context.Context, what, url string, body any, headers map[string]string) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return ticketing.Temporary(fmt.Errorf("%s: %w", what, err), 0)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return httpError(what, resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func (r *Route) webhook(ctx context.Context, w *catalogue.WebhookReceiver, n Notification, key string) error {
	h := map[string]string{"Idempotency-Key": key, "User-Agent": "Samdrift"}
	if r.token != "" {
		h["Authorization"] = "Bearer " + r.token
	}
	return r.post(ctx, "webhook "+w.URL, w.URL, n, h)
}

// alertmanager forwards the incident as the alert SamdriftIncident. Firing
// alerts carry an end a week ahead (notifications are sent on events, not
// re-sent like rule alerts); resolution ends it.
func (r *Route) alertmanager(ctx context.Context, am *catalogue.AlertmanagerReceiver, n Notification) error {
	end := time.Now().Add(7 * 24 * time.Hour)
	if n.Incident.State == ticketing.StateResolved {
		end = n.Incident.ResolvedAt
	}
	alert := map[string]any{
		"labels": map[string]string{
			"alertname": "SamdriftIncident", "agency": n.Incident.Agency, "service": n.Incident.Service,
			"priority": n.Incident.Priority, "incident": n.Incident.ID, "source_alert": n.Incident.AlertName,
		},
		"annotations": map[string]string{
			"summary": n.Incident.Summary, "ticket": n.Incident.Ticket, "incident_url": n.Links.Incident,
			"dashboard": n.Links.Dashboard, "runbook_url": n.Links.Runbook, "event": n.Event,
		},
		"startsAt":     n.Incident.OpenedAt,
		"endsAt":       end,
		"generatorURL": n.Links.Incident,
	}
	return r.post(ctx, "alertmanager "+am.URL, strings.TrimSuffix(am.URL, "/")+"/api/v2/alerts", []any{alert}, nil)
}

// Subject is the e-mail subject of a notification.
func Subject(n Notification) string {
	ticket := ""
	if n.Incident.Ticket != "" {
		ticket = " (" + n.Incident.Ticket + ")"
	}
	return fmt.Sprintf("[Samdrift][%s][%s] %s/%s: %s%s", n.Incident.Priority, n.Event, n.Incident.Agency, n.Incident.Service, n.Incident.Summary, ticket)
}

func (r *Route) email(e *catalogue.EmailReceiver, n Notification) error {
	var body strings.Builder
	line := func(format string, args ...any) {
		for i, a := range args {
			if v, ok := a.(string); ok {
				args[i] = oneLine(v)
			}
		}
		fmt.Fprintf(&body, format+"\r\n", args...)
	}
	line("Incident %s %s.", n.Incident.ID, n.Event)
	body.WriteString("\r\n")
	line("Agency:   %s", n.Incident.Agency)
	line("Service:  %s", n.Incident.Service)
	line("Priority: %s", n.Incident.Priority)
	line("State:    %s", n.Incident.State)
	line("Ticket:   %s", n.Incident.Ticket)
	line("Summary:  %s", n.Incident.Summary)
	if n.Incident.DeliveryError != "" {
		line("Delivery error: %s", n.Incident.DeliveryError)
	}
	body.WriteString("\r\n")
	line("Incident:  %s", n.Links.Incident)
	if n.Links.Dashboard != "" {
		line("Dashboard: %s", n.Links.Dashboard)
	}
	if n.Links.Runbook != "" {
		line("Runbook:   %s", n.Links.Runbook)
	}
	msg := "From: " + oneLine(e.From) + "\r\nTo: " + oneLine(strings.Join(e.To, ", ")) + "\r\nSubject: " + mimeHeader(Subject(n)) +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body.String()
	if err := sendMail(e, r.smtpPass, []byte(msg)); err != nil {
		return ticketing.Temporary(fmt.Errorf("email via %s: %w", e.Smarthost, err), 0)
	}
	return nil
}

// smtpTimeout bounds a whole SMTP conversation: a stalled mail server cannot
// hold a delivery lane.
var smtpTimeout = 30 * time.Second

// sendMail is smtp.SendMail with a deadline on the connection.
func sendMail(e *catalogue.EmailReceiver, password string, msg []byte) error {
	host, _, err := net.SplitHostPort(e.Smarthost)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", e.Smarthost, smtpTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(smtpTimeout)); err != nil {
		return err
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return err
		}
	}
	if e.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.Username, password, host)); err != nil {
			return err
		}
	}
	if err := c.Mail(e.From); err != nil {
		return err
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// oneLine makes s safe for one header or body line: control characters
// (CR, LF, …) become spaces, so text from an alert cannot start a header or
// a forged body.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// mimeHeader makes a header value of s: one line, RFC 2047-encoded where
// it is not plain printable ASCII.
func mimeHeader(s string) string {
	return mime.QEncoding.Encode("utf-8", oneLine(s))
}

// safeLink returns u if it is an absolute http(s) URL, else "".
func safeLink(u string) string {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || strings.ContainsAny(u, "\r\n") {
		return ""
	}
	return p.String()
}
