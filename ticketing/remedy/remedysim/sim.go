// Package remedysim simulates the subset of BMC Remedy's AR System REST API
// that Samdrift's Remedy backend uses, closely enough that the same client
// works against a real server: JWT login (/api/jwt/login, logout, expiry),
// entries on HPD:IncidentInterface_Create, HPD:IncidentInterface and
// HPD:WorkLog with AR-style validation errors, qualification search,
// multi-tenancy (a user sees and writes only entries of its companies),
// rate limiting (429) and an outage switch (503). It keeps everything in
// memory.
package remedysim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// Form names.
const (
	FormCreate   = "HPD:IncidentInterface_Create"
	FormIncident = "HPD:IncidentInterface"
	FormWorkLog  = "HPD:WorkLog"
	// FormCompany is Foundation's company form; the simulator lists
	// Options.Companies there (Company Type "Customer", Status "Enabled").
	FormCompany = "COM:Company"
)

// Field limits, as on HPD:Help Desk.
const (
	MaxDescription = 100
	MaxGroup       = 60
)

// User is a Remedy login with the companies it may see and write ("*": all).
type User struct {
	Name      string
	Password  string
	Companies []string
}

// Options configure the simulator.
type Options struct {
	Users []User
	// Companies known to the server; creating an incident for another
	// company is refused. Empty: every company a user may write.
	Companies []string
	// TokenTTL is how long a JWT stays valid (AR's default: one hour).
	TokenTTL time.Duration
	// Rate and Burst limit requests per second over all users (0: unlimited).
	Rate  float64
	Burst int
	Now   func() time.Time
	// OnCreate, if set, is called with each incident created, as stored
	// (benchmarks time deliveries with it).
	OnCreate func(values map[string]any)
	// Latency is how long each request takes to answer, as a real AR
	// System server's ~100 ms (0: at once). Requests are answered
	// concurrently: the server is slow, not serial.
	Latency time.Duration
}

// Sim is the simulated server.
type Sim struct {
	opts    Options
	limiter *rate.Limiter

	mu        sync.Mutex
	down      bool
	tokens    map[string]session
	seq       int
	entries   map[string]map[string]map[string]any // form -> entry id -> values
	requests  int
	logins    int
	throttled int
}

type session struct {
	user    User
	expires time.Time
}

// New returns a simulator.
func New(o Options) *Sim {
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Sim{opts: o, tokens: map[string]session{}, entries: map[string]map[string]map[string]any{
		FormIncident: {}, FormWorkLog: {}, FormCompany: {},
	}}
	for i, c := range o.Companies {
		s.entries[FormCompany][fmt.Sprintf("CPY%012d", i+1)] = map[string]any{"Company": c, "Company Type": "Customer", "Status": "Enabled"}
	}
	if o.Rate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(o.Rate), max(o.Burst, 1))
	}
	return s
}

// Throttled is the number of requests refused with 429 by the rate limit.
func (s *Sim) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// Requests is the number of requests received.
func (s *Sim) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// SetDown switches the outage on or off: while down every request gets 503.
func (s *Sim) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// ExpireTokens invalidates every issued token (as a server restart does).
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]session{}
}

// Logins counts successful logins.
func (s *Sim) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Entries returns copies of a form's entries, ordered by id.
func (s *Sim) Entries(form string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.entries[form]))
	for id := range s.entries[form] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		c := map[string]any{}
		for k, v := range s.entries[form][id] {
			c[k] = v
		}
		out = append(out, c)
	}
	return out
}

// SetStatus changes an incident's status as a person would (Closed,
// Cancelled, …), found by its incident number.
func (s *Sim) SetStatus(incidentNumber, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries[FormIncident] {
		if e["Incident Number"] == incidentNumber {
			e["Status"] = status
			return true
		}
	}
	return false
}

// arError is one AR System message, the element of an error body.
type arError struct {
	MessageType         string `json:"messageType"`
	MessageText         string `json:"messageText"`
	MessageAppendedText string `json:"messageAppendedText,omitempty"`
	MessageNumber       int    `json:"messageNumber"`
}

func writeAR(w http.ResponseWriter, status, number int, text, appended string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode([]arError{{MessageType: "ERROR", MessageText: text, MessageAppendedText: appended, MessageNumber: number}})
}

// ServeHTTP serves /api/jwt/login, /api/jwt/logout and
// /api/arsys/v1/entry/{form}[/{id}].
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if i := strings.Index(path, "/api/"); i > 0 {
		path = path[i:] // mounted under a prefix
	}
	s.mu.Lock()
	s.requests++
	down := s.down
	s.mu.Unlock()
	if down {
		writeAR(w, http.StatusServiceUnavailable, 90, "Cannot establish a network connection to the AR System server", "simulated outage")
		return
	}
	if s.opts.Latency > 0 {
		select {
		case <-time.After(s.opts.Latency):
		case <-r.Context().Done():
			return
		}
	}
	if s.limiter != nil {
		res := s.limiter.Reserve()
		if d := res.Delay(); d > 0 {
			res.Cancel()
			s.mu.Lock()
			s.throttled++
			s.mu.Unlock()
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
			writeAR(w, http.StatusTooManyRequests, 9093, "Too many requests", "rate limit exceeded, retry later")
			return
		}
	}
	switch {
	case path == "/api/jwt/login" && r.Method == http.MethodPost:
		s.login(w, r)
	case path == "/api/jwt/logout" && r.Method == http.MethodPost:
		s.logout(w, r)
	case strings.HasPrefix(path, "/api/arsys/v1/entry/"):
		sess, ok := s.session(r)
		if !ok {
			writeAR(w, http.StatusUnauthorized, 623, "Authentication failed", "the AR-JWT token is missing, invalid or expired")
			return
		}
		rest, _ := url.PathUnescape(strings.TrimPrefix(path, "/api/arsys/v1/entry/"))
		form, id, _ := strings.Cut(rest, "/")
		s.entry(w, r, sess.user, form, id)
	default:
		writeAR(w, http.StatusNotFound, 8745, "Resource not found", path)
	}
}

func (s *Sim) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeAR(w, http.StatusBadRequest, 623, "Authentication failed", "malformed login form")
		return
	}
	name, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
	for _, u := range s.opts.Users {
		if u.Name == name && u.Password == pw {
			b := make([]byte, 24)
			_, _ = rand.Read(b)
			tok := hex.EncodeToString(b)
			s.mu.Lock()
			s.tokens[tok] = session{user: u, expires: s.opts.Now().Add(s.opts.TokenTTL)}
			s.logins++
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(tok))
			return
		}
	}
	writeAR(w, http.StatusUnauthorized, 623, "Authentication failed", name)
}

func (s *Sim) logout(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "AR-JWT ")
	s.mu.Lock()
	delete(s.tokens, tok)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) session(r *http.Request) (session, bool) {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "AR-JWT ") {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.tokens[strings.TrimPrefix(h, "AR-JWT ")]
	if !ok || !s.opts.Now().Before(sess.expires) {
		return session{}, false
	}
	return sess, true
}

func canSee(u User, company any) bool {
	c, _ := company.(string)
	return slices.Contains(u.Companies, "*") || slices.Contains(u.Companies, c)
}

func (s *Sim) entry(w http.ResponseWriter, r *http.Request, u User, form, id string) {
	switch {
	case form == FormCreate && id == "" && r.Method == http.MethodPost:
		s.createIncident(w, r, u)
	case form == FormWorkLog && id == "" && r.Method == http.MethodPost:
		s.createWorkLog(w, r, u)
	case (form == FormIncident || form == FormWorkLog || form == FormCompany) && id == "" && r.Method == http.MethodGet:
		s.list(w, r, u, form)
	case form == FormIncident && id != "" && r.Method == http.MethodGet:
		s.get(w, r, u, form, id)
	case form == FormIncident && id != "" && r.Method == http.MethodPut:
		s.update(w, r, u, id)
	default:
		writeAR(w, http.StatusNotFound, 303, "Form does not exist on server", form)
	}
}

func decodeValues(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var body struct {
		Values map[string]any `json:"values"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || body.Values == nil {
		writeAR(w, http.StatusBadRequest, 8956, "Invalid JSON body: want {\"values\": {...}}", fmt.Sprint(err))
		return nil, false
	}
	return body.Values, true
}

var (
	impacts  = []string{"1-Extensive/Widespread", "2-Significant/Large", "3-Moderate/Limited", "4-Minor/Localized"}
	urgency  = []string{"1-Critical", "2-High", "3-Medium", "4-Low"}
	statuses = []string{"New", "Assigned", "In Progress", "Pending", "Resolved", "Closed", "Cancelled"}
)

// validate checks enumerations and lengths of the fields present.
func validate(v map[string]any) (int, string, string) {
	str := func(k string) (string, bool) {
		x, ok := v[k]
		if !ok {
			return "", false
		}
		s, _ := x.(string)
		return s, true
	}
	for k, allowed := range map[string][]string{"Impact": impacts, "Urgency": urgency, "Status": statuses} {
		if val, ok := str(k); ok && !slices.Contains(allowed, val) {
			return 306, "Value does not fall within the limits specified for the field", fmt.Sprintf("%s: %q", k, val)
		}
	}
	if val, ok := str("Description"); ok && utf8.RuneCountInString(val) > MaxDescription {
		return 306, "Value does not fall within the limits specified for the field", fmt.Sprintf("Description: %d characters, limit %d", utf8.RuneCountInString(val), MaxDescription)
	}
	if val, ok := str("Assigned Group"); ok && utf8.RuneCountInString(val) > MaxGroup {
		return 306, "Value does not fall within the limits specified for the field", fmt.Sprintf("Assigned Group: limit %d", MaxGroup)
	}
	return 0, "", ""
}

func (s *Sim) createIncident(w http.ResponseWriter, r *http.Request, u User) {
	v, ok := decodeValues(w, r)
	if !ok {
		return
	}
	for _, f := range []string{"First_Name", "Last_Name", "Description", "Impact", "Urgency", "Status", "Reported Source", "Service_Type", "Company"} {
		if s, _ := v[f].(string); s == "" {
			writeAR(w, http.StatusBadRequest, 326, "Required field cannot be blank.", f)
			return
		}
	}
	if n, text, app := validate(v); n != 0 {
		writeAR(w, http.StatusBadRequest, n, text, app)
		return
	}
	company := v["Company"].(string)
	if len(s.opts.Companies) > 0 && !slices.Contains(s.opts.Companies, company) {
		writeAR(w, http.StatusBadRequest, 48252, "The company is not valid. Select a company from the list.", company)
		return
	}
	if !canSee(u, company) {
		writeAR(w, http.StatusForbidden, 9093, "You do not have write access to this company", company)
		return
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("%015d", s.seq)
	inc := fmt.Sprintf("INC%012d", s.seq)
	e := map[string]any{}
	for k, val := range v {
		e[k] = val
	}
	now := s.opts.Now().UTC().Format(time.RFC3339)
	e["Request ID"], e["Incident Number"], e["Submitter"], e["Submit Date"], e["Last Modified Date"] = id, inc, u.Name, now, now
	s.entries[FormIncident][id] = e
	created := maps.Clone(e)
	s.mu.Unlock()
	if s.opts.OnCreate != nil {
		s.opts.OnCreate(created)
	}
	loc := baseURL(r) + "/api/arsys/v1/entry/" + FormCreate + "/" + id
	w.Header().Set("Location", loc)
	if sel := fieldsParam(r); sel != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"values": pick(e, sel), "_links": links(loc)})
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *Sim) createWorkLog(w http.ResponseWriter, r *http.Request, u User) {
	v, ok := decodeValues(w, r)
	if !ok {
		return
	}
	for _, f := range []string{"Incident Number", "Description", "Work Log Type"} {
		if s, _ := v[f].(string); s == "" {
			writeAR(w, http.StatusBadRequest, 326, "Required field cannot be blank.", f)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var parent map[string]any
	for _, e := range s.entries[FormIncident] {
		if e["Incident Number"] == v["Incident Number"] {
			parent = e
		}
	}
	if parent == nil || !canSee(u, parent["Company"]) {
		writeAR(w, http.StatusBadRequest, 48263, "The incident does not exist or is not accessible", fmt.Sprint(v["Incident Number"]))
		return
	}
	s.seq++
	id := fmt.Sprintf("WLG%012d", s.seq)
	e := map[string]any{}
	for k, val := range v {
		e[k] = val
	}
	e["Work Log ID"], e["Submitter"], e["Company"], e["Submit Date"] = id, u.Name, parent["Company"], s.opts.Now().UTC().Format(time.RFC3339)
	s.entries[FormWorkLog][id] = e
	w.Header().Set("Location", baseURL(r)+"/api/arsys/v1/entry/"+FormWorkLog+"/"+id)
	w.WriteHeader(http.StatusCreated)
}

func (s *Sim) list(w http.ResponseWriter, r *http.Request, u User, form string) {
	q, err := parseQualification(r.URL.Query().Get("q"))
	if err != nil {
		writeAR(w, http.StatusBadRequest, 1587, "Syntax error in qualification", err.Error())
		return
	}
	limit := -1
	if l := r.URL.Query().Get("limit"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	sel := fieldsParam(r)
	s.mu.Lock()
	var ids []string
	for id, e := range s.entries[form] {
		if canSee(u, e["Company"]) && q.matches(e) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	entries := []map[string]any{}
	for _, id := range ids {
		if limit >= 0 && len(entries) >= limit {
			break
		}
		entries = append(entries, map[string]any{"values": pick(s.entries[form][id], sel), "_links": links(baseURL(r) + "/api/arsys/v1/entry/" + form + "/" + id)})
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"entries": entries, "_links": links(baseURL(r) + r.URL.RequestURI())})
}

func (s *Sim) get(w http.ResponseWriter, r *http.Request, u User, form, id string) {
	s.mu.Lock()
	e, ok := s.entries[form][id]
	var out map[string]any
	if ok && canSee(u, e["Company"]) {
		out = pick(e, fieldsParam(r))
	}
	s.mu.Unlock()
	if out == nil {
		writeAR(w, http.StatusNotFound, 302, "Entry does not exist in database", id)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"values": out, "_links": links(baseURL(r) + r.URL.Path)})
}

func (s *Sim) update(w http.ResponseWriter, r *http.Request, u User, id string) {
	v, ok := decodeValues(w, r)
	if !ok {
		return
	}
	if n, text, app := validate(v); n != 0 {
		writeAR(w, http.StatusBadRequest, n, text, app)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[FormIncident][id]
	if !ok || !canSee(u, e["Company"]) {
		writeAR(w, http.StatusNotFound, 302, "Entry does not exist in database", id)
		return
	}
	if c, ok := v["Company"]; ok && !canSee(u, c) {
		writeAR(w, http.StatusForbidden, 9093, "You do not have write access to this company", fmt.Sprint(c))
		return
	}
	if st, _ := v["Status"].(string); st == "Resolved" {
		if res, _ := v["Resolution"].(string); res == "" {
			if old, _ := e["Resolution"].(string); old == "" {
				writeAR(w, http.StatusBadRequest, 326, "Required field cannot be blank.", "Resolution")
				return
			}
		}
	}
	for k, val := range v {
		e[k] = val
	}
	e["Last Modified Date"] = s.opts.Now().UTC().Format(time.RFC3339)
	w.WriteHeader(http.StatusNoContent)
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	prefix := ""
	if i := strings.Index(r.URL.Path, "/api/"); i > 0 {
		prefix = r.URL.Path[:i]
	}
	return scheme + "://" + r.Host + prefix
}

func links(href string) map[string]any {
	return map[string]any{"self": []map[string]string{{"href": href}}}
}

var fieldsRe = regexp.MustCompile(`^values\((.*)\)$`)

// fieldsParam parses ?fields=values(a,b); nil means every field.
func fieldsParam(r *http.Request) []string {
	m := fieldsRe.FindStringSubmatch(r.URL.Query().Get("fields"))
	if m == nil {
		return nil
	}
	var out []string
	for _, f := range strings.Split(m[1], ",") {
		out = append(out, strings.TrimSpace(f))
	}
	return out
}

func pick(e map[string]any, sel []string) map[string]any {
	out := map[string]any{}
	if sel == nil {
		for k, v := range e {
			out[k] = v
		}
		return out
	}
	for _, k := range sel {
		out[k] = e[k]
	}
	return out
}

// qualification is a conjunction of 'Field' = "value" and 'Field' LIKE
// "pattern%" terms, the part of AR's qualification language the client uses.
type qualification []term

type term struct {
	field, op, value string
}

var termRe = regexp.MustCompile(`^\s*\(?\s*'([^']+)'\s*(=|!=|LIKE)\s*"((?:[^"\\]|\\.)*)"\s*\)?\s*`)

func parseQualification(q string) (qualification, error) {
	var out qualification
	rest := strings.TrimSpace(q)
	for rest != "" {
		m := termRe.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("cannot parse %q", rest)
		}
		out = append(out, term{m[1], m[2], strings.ReplaceAll(m[3], `\"`, `"`)})
		rest = strings.TrimSpace(rest[len(m[0]):])
		if rest == "" {
			break
		}
		if !strings.HasPrefix(strings.ToUpper(rest), "AND ") {
			return nil, fmt.Errorf("want AND before %q", rest)
		}
		rest = strings.TrimSpace(rest[4:])
	}
	return out, nil
}

func (q qualification) matches(e map[string]any) bool {
	for _, t := range q {
		v := fmt.Sprint(e[t.field])
		if e[t.field] == nil {
			v = ""
		}
		switch t.op {
		case "=":
			if v != t.value {
				return false
			}
		case "!=":
			if v == t.value {
				return false
			}
		case "LIKE":
			re := "^" + strings.ReplaceAll(regexp.QuoteMeta(t.value), "%", ".*") + "$"
			if ok, _ := regexp.MatchString(re, v); !ok {
				return false
			}
		}
	}
	return true
}
