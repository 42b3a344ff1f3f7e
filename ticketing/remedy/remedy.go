// Package remedy is the BMC Remedy (Helix ITSM) backend: it speaks the AR
// System REST API to create, update, annotate and resolve incidents on
// HPD:IncidentInterface under the agency's company, idempotently: before
// creating, it searches for the incident key it stores in a configurable
// field, so a retry after a crash finds the ticket instead of making another.
package remedy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/samdrift/samdrift/ticketing"
)

// Form names of the AR System ITSM incident interface.
const (
	formCreate   = "HPD:IncidentInterface_Create"
	formIncident = "HPD:IncidentInterface"
	formWorkLog  = "HPD:WorkLog"
	formCompany  = "COM:Company"
)

// CompanyExists reports whether Remedy knows an enabled company of that
// name (Foundation form COM:Company), for checking an agency's company at
// onboarding.
func (c *Client) CompanyExists(ctx context.Context, company string) (bool, error) {
	q := url.Values{
		"q":      {fmt.Sprintf(`'Company' = "%s"`, quote(company))},
		"fields": {"values(Company,Status)"},
	}
	_, b, err := c.do(ctx, http.MethodGet, "/api/arsys/v1/entry/"+url.PathEscape(formCompany)+"?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	var es entries
	if err := json.Unmarshal(b, &es); err != nil {
		return false, fmt.Errorf("remedy company search: %w", err)
	}
	for _, e := range es.Entries {
		if str(e.Values["Company"]) == company && str(e.Values["Status"]) != "Obsolete" && str(e.Values["Status"]) != "Delete" {
			return true, nil
		}
	}
	return false, nil
}

// DescriptionLimit is the length of HPD:Help Desk's Description field.
const DescriptionLimit = 100

// Config configures the Remedy client.
type Config struct {
	URL      string
	Username string
	Password string
	// FirstName and LastName are the integration's person record.
	FirstName string
	LastName  string
	// KeyField holds Samdrift's incident id on the ticket, for idempotency.
	KeyField string
	// TokenTTL: the client logs in again this long after a login, before
	// the server's token expires (AR's default lifetime is one hour).
	TokenTTL time.Duration
	Timeout  time.Duration
	// ExternalURL links tickets back to Samdrift.
	ExternalURL string
	Logger      *slog.Logger
	HTTPClient  *http.Client
	Now         func() time.Time
	// MaxRequestsPerSecond paces every request to stay under the server's
	// quota (0: unpaced). A 429 from the server is obeyed either way.
	MaxRequestsPerSecond float64
}

// Client is a Remedy AR REST client and a ticketing.Backend.
type Client struct {
	cfg     Config
	http    *http.Client
	limiter *rate.Limiter // nil: unpaced

	mu      sync.Mutex
	token   string
	tokenAt time.Time
}

// New returns a client; call Login to check the credentials at startup.
func New(cfg Config) *Client {
	if cfg.KeyField == "" {
		cfg.KeyField = "Vendor Ticket Number"
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 55 * time.Minute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FirstName == "" {
		cfg.FirstName = "Samdrift"
	}
	if cfg.LastName == "" {
		cfg.LastName = "Integration"
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout}
	}
	c := &Client{cfg: cfg, http: hc}
	if cfg.MaxRequestsPerSecond > 0 {
		// Burst 1: evenly spaced, whatever burst the server allows.
		c.limiter = rate.NewLimiter(rate.Limit(cfg.MaxRequestsPerSecond), 1)
	}
	return c
}

// ARError is an AR System error response.
type ARError struct {
	Status   int
	Messages []ARMessage
}

// ARMessage is one message of an AR System error body.
type ARMessage struct {
	MessageType         string `json:"messageType"`
	MessageText         string `json:"messageText"`
	MessageAppendedText string `json:"messageAppendedText"`
	MessageNumber       int    `json:"messageNumber"`
}

func (e *ARError) Error() string {
	parts := make([]string, 0, len(e.Messages))
	for _, m := range e.Messages {
		s := fmt.Sprintf("ARERR %d: %s", m.MessageNumber, m.MessageText)
		if m.MessageAppendedText != "" {
			s += " (" + m.MessageAppendedText + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return fmt.Sprintf("remedy: HTTP %d", e.Status)
	}
	return fmt.Sprintf("remedy: HTTP %d: %s", e.Status, strings.Join(parts, "; "))
}

// ErrLogin is returned when Remedy refuses the integration's credentials.
var ErrLogin = errors.New("remedy refused the login")

// Login logs in and keeps the token.
func (c *Client) Login(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loginLocked(ctx)
}

func (c *Client) loginLocked(ctx context.Context) error {
	form := url.Values{"username": {c.cfg.Username}, "password": {c.cfg.Password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL+"/api/jwt/login", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return ticketing.Temporary(fmt.Errorf("remedy login: %w", err), 0)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		arErr := parseError(resp.StatusCode, b)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%w as %q: %w", ErrLogin, c.cfg.Username, arErr)
		}
		return classify(resp, arErr)
	}
	c.token = strings.TrimSpace(string(b))
	c.tokenAt = c.cfg.Now()
	return nil
}

// Logout releases the token.
func (c *Client) Logout(ctx context.Context) error {
	c.mu.Lock()
	tok := c.token
	c.token = ""
	c.mu.Unlock()
	if tok == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL+"/api/jwt/logout", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "AR-JWT "+tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// currentToken returns a token, logging in when there is none or it is
// about to expire.
func (c *Client) currentToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == "" || c.cfg.Now().Sub(c.tokenAt) >= c.cfg.TokenTTL {
		if err := c.loginLocked(ctx); err != nil {
			return "", err
		}
	}
	return c.token, nil
}

func (c *Client) invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
}

// do sends a request with the token, logging in again once on 401.
func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				return nil, nil, err
			}
		}
		tok, err := c.currentToken(ctx)
		if err != nil {
			if errors.Is(err, ErrLogin) {
				// The credentials may be fixed on the server meanwhile:
				// retried, and logged loudly by the outbox.
				return nil, nil, ticketing.Temporary(err, time.Minute)
			}
			return nil, nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, c.cfg.URL+path, bytes.NewReader(payload))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Authorization", "AR-JWT "+tok)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, nil, ticketing.Temporary(fmt.Errorf("remedy %s %s: %w", method, path, err), 0)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			c.invalidate(tok) // expired or revoked: log in again
			continue
		}
		if resp.StatusCode >= 300 {
			return resp, b, classify(resp, parseError(resp.StatusCode, b))
		}
		return resp, b, nil
	}
}

func parseError(status int, b []byte) *ARError {
	e := &ARError{Status: status}
	_ = json.Unmarshal(b, &e.Messages)
	return e
}

// classify makes 5xx, 429 and 401 temporary (retried by the outbox) and
// other errors (validation, permissions) permanent.
func classify(resp *http.Response, e *ARError) error {
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500, resp.StatusCode == http.StatusUnauthorized:
		var after time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			after = time.Duration(s) * time.Second
		}
		return ticketing.Temporary(e, after)
	}
	return e
}

type entries struct {
	Entries []struct {
		Values map[string]any `json:"values"`
	} `json:"entries"`
}

// ticket is what the client knows of a Remedy incident.
type ticket struct {
	RequestID, Number, Status string
}

func quote(s string) string { return strings.ReplaceAll(s, `"`, `\"`) }

// find searches HPD:IncidentInterface for the ticket carrying key.
func (c *Client) find(ctx context.Context, key string) (*ticket, error) {
	q := url.Values{
		"q":      {fmt.Sprintf(`'%s' = "%s"`, c.cfg.KeyField, quote(key))},
		"fields": {"values(Request ID,Incident Number,Status)"},
	}
	_, b, err := c.do(ctx, http.MethodGet, "/api/arsys/v1/entry/"+url.PathEscape(formIncident)+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var es entries
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, ticketing.Temporary(fmt.Errorf("remedy search: %w", err), 0)
	}
	if len(es.Entries) == 0 {
		return nil, nil
	}
	v := es.Entries[0].Values
	return &ticket{RequestID: str(v["Request ID"]), Number: str(v["Incident Number"]), Status: str(v["Status"])}, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// closedByPeople are statuses Samdrift never changes.
func closedByPeople(status string) bool { return status == "Closed" || status == "Cancelled" }

// Deliver makes the Remedy incident reflect inc: found by its key (or
// created), updated, annotated with the work log entries it lacks, resolved
// when the incident is. An incident a person closed or cancelled is never
// modified: if Samdrift's incident opens again, a follow-up ticket is made.
func (c *Client) Deliver(ctx context.Context, inc *ticketing.Incident) (string, error) {
	var t *ticket
	key := inc.ID
	for n := 1; n <= 20; n++ {
		if n > 1 {
			key = fmt.Sprintf("%s-%d", inc.ID, n)
		}
		found, err := c.find(ctx, key)
		if err != nil {
			return "", err
		}
		if found == nil {
			break
		}
		if closedByPeople(found.Status) {
			if !inc.Open() {
				return found.Number, nil // closed by people, resolved by us: nothing to do
			}
			continue // open again: the next follow-up key
		}
		t = found
		break
	}
	fresh := t == nil
	if fresh {
		created, err := c.create(ctx, inc, key)
		if err != nil {
			return "", err
		}
		t = created
	}
	// A ticket just created carries the incident as it is and has no work
	// log yet: two requests fewer per new incident, which counts under a
	// storm against a rate-limited server.
	if !fresh || !inc.Open() {
		if err := c.update(ctx, inc, t); err != nil {
			return "", err
		}
	}
	if err := c.workLog(ctx, inc, t, fresh); err != nil {
		return "", err
	}
	return t.Number, nil
}

func impact(n int) string {
	return [...]string{"1-Extensive/Widespread", "2-Significant/Large", "3-Moderate/Limited", "4-Minor/Localized"}[min(max(n, 1), 4)-1]
}

func urgency(n int) string {
	return [...]string{"1-Critical", "2-High", "3-Medium", "4-Low"}[min(max(n, 1), 4)-1]
}

// Truncate shortens s to at most n characters on a rune boundary, marking
// the cut with an ellipsis.
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func (c *Client) detailed(inc *ticketing.Incident) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", inc.Summary)
	if inc.Description != "" {
		fmt.Fprintf(&b, "%s\n\n", inc.Description)
	}
	fmt.Fprintf(&b, "Agency: %s\nService: %s\nAlert: %s\nPriority: %s (impact %d, urgency %d)\nSeverity: %s, tier: %s\nAlerts grouped: %d\nSamdrift incident: %s (%s)\n",
		inc.Agency, inc.Service, inc.AlertName, inc.Priority, inc.Impact, inc.Urgency, inc.Severity, inc.Tier, inc.Count, inc.ID, inc.Key)
	if v := inc.Annotations["runbook_url"]; v != "" {
		fmt.Fprintf(&b, "Runbook: %s\n", v)
	}
	if v := inc.Annotations["dashboard"]; v != "" {
		fmt.Fprintf(&b, "Dashboard: %s\n", v)
	}
	if c.cfg.ExternalURL != "" {
		fmt.Fprintf(&b, "Incident in Samdrift: %s/api/v1/incidents/%s\n", c.cfg.ExternalURL, inc.ID)
	}
	keys := make([]string, 0, len(inc.Labels))
	for k := range inc.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("\nLabels:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s=%s\n", k, inc.Labels[k])
	}
	akeys := make([]string, 0, len(inc.Annotations))
	for k := range inc.Annotations {
		akeys = append(akeys, k)
	}
	sort.Strings(akeys)
	if len(akeys) > 0 {
		b.WriteString("Annotations:\n")
		for _, k := range akeys {
			fmt.Fprintf(&b, "  %s=%s\n", k, inc.Annotations[k])
		}
	}
	return b.String()
}

func (c *Client) create(ctx context.Context, inc *ticketing.Incident, key string) (*ticket, error) {
	values := map[string]any{
		"First_Name":                    c.cfg.FirstName,
		"Last_Name":                     c.cfg.LastName,
		"Description":                   Truncate(inc.Summary, DescriptionLimit),
		"Detailed_Decription":           c.detailed(inc),
		"Impact":                        impact(inc.Impact),
		"Urgency":                       urgency(inc.Urgency),
		"Status":                        "Assigned",
		"Reported Source":               "Systems Management",
		"Service_Type":                  "Infrastructure Event",
		"Company":                       inc.Company,
		"Assigned Support Company":      inc.SupportCompany,
		"Assigned Support Organization": inc.SupportOrganization,
		"Assigned Group":                inc.SupportGroup,
		c.cfg.KeyField:                  key,
	}
	path := "/api/arsys/v1/entry/" + url.PathEscape(formCreate) + "?" + url.Values{"fields": {"values(Incident Number,Request ID)"}}.Encode()
	_, b, err := c.do(ctx, http.MethodPost, path, map[string]any{"values": values})
	if err != nil {
		return nil, err
	}
	var created struct {
		Values map[string]any `json:"values"`
	}
	_ = json.Unmarshal(b, &created)
	t := &ticket{RequestID: str(created.Values["Request ID"]), Number: str(created.Values["Incident Number"]), Status: "Assigned"}
	if t.RequestID == "" || t.Number == "" {
		// Servers that answer with only a Location: find it by its key.
		found, err := c.find(ctx, key)
		if err != nil || found == nil {
			return nil, ticketing.Temporary(fmt.Errorf("remedy created incident %s but cannot find it (%w)", key, err), 0)
		}
		t = found
	}
	c.cfg.Logger.Info("remedy incident created", "incident", inc.ID, "ticket", t.Number, "agency", inc.Agency, "company", inc.Company)
	return t, nil
}

func (c *Client) update(ctx context.Context, inc *ticketing.Incident, t *ticket) error {
	values := map[string]any{
		"Impact":              impact(inc.Impact),
		"Urgency":             urgency(inc.Urgency),
		"Description":         Truncate(inc.Summary, DescriptionLimit),
		"Detailed_Decription": c.detailed(inc),
	}
	switch {
	case !inc.Open():
		values["Status"] = "Resolved"
		values["Status_Reason"] = "Automated Resolution Reported"
		values["Resolution"] = fmt.Sprintf("Resolved by Samdrift at %s: every alert of the incident has resolved.", inc.ResolvedAt.UTC().Format(time.RFC3339))
	case t.Status == "Resolved":
		values["Status"] = "Assigned" // reopened within the reopen window
	}
	_, _, err := c.do(ctx, http.MethodPut, "/api/arsys/v1/entry/"+url.PathEscape(formIncident)+"/"+url.PathEscape(t.RequestID), map[string]any{"values": values})
	return err
}

// workLog adds the incident's work log entries the ticket does not have yet
// (a fresh ticket has none).
func (c *Client) workLog(ctx context.Context, inc *ticketing.Incident, t *ticket, fresh bool) error {
	var es entries
	if !fresh {
		if err := c.workLogEntries(ctx, t, &es); err != nil {
			return err
		}
	}
	for _, e := range inc.WorkLog[min(len(es.Entries), len(inc.WorkLog)):] {
		values := map[string]any{
			"Incident Number":      t.Number,
			"Description":          Truncate(e.Text, DescriptionLimit),
			"Detailed Description": fmt.Sprintf("%s — %s (%s)", e.At.UTC().Format(time.RFC3339), e.Text, e.Author),
			"Work Log Type":        "General Information",
			"View Access":          "Internal",
			"Secure Work Log":      "No",
		}
		if _, _, err := c.do(ctx, http.MethodPost, "/api/arsys/v1/entry/"+url.PathEscape(formWorkLog), map[string]any{"values": values}); err != nil {
			return err
		}
	}
	return nil
}

// workLogEntries lists the work log entries this integration wrote on t.
func (c *Client) workLogEntries(ctx context.Context, t *ticket, es *entries) error {
	q := url.Values{
		"q":      {fmt.Sprintf(`'Incident Number' = "%s" AND 'Submitter' = "%s"`, quote(t.Number), quote(c.cfg.Username))},
		"fields": {"values(Work Log ID)"},
	}
	_, b, err := c.do(ctx, http.MethodGet, "/api/arsys/v1/entry/"+url.PathEscape(formWorkLog)+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, es); err != nil {
		return ticketing.Temporary(fmt.Errorf("remedy work log search: %w", err), 0)
	}
	return nil
}
