package builtin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing"
)

// APIPrefix is where the incidents API is served.
const APIPrefix = "/api/v1/incidents"

// Page sizes of the incident list.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// API serves the incidents visible to the caller:
//
//	GET  /api/v1/incidents[?state=&service=&agency=&since=&limit=&cursor=]   a page, newest first
//	GET  /api/v1/incidents/{id}
//	POST /api/v1/incidents/{id}/{ack,assign,notes}                          ops and admin
//
// Callers are authenticated before it; actions and refusals are audited.
type API struct {
	store *Store
	guard *tenancy.Guard
}

// NewAPI returns the incidents API of a store.
func NewAPI(s *Store, g *tenancy.Guard) *API {
	return &API{store: s, guard: g}
}

// Page is one page of incidents; Next is the cursor of the following page
// ("" on the last).
type Page struct {
	Incidents []Record `json:"incidents"`
	Next      string   `json:"next,omitempty"`
}

// List serves GET /api/v1/incidents.
func (a *API) List(w http.ResponseWriter, r *http.Request) {
	id, _ := tenancy.FromContext(r.Context())
	q := r.URL.Query()
	f := Filter{State: q.Get("state"), Service: q.Get("service"), Limit: DefaultPageSize}
	if id.AllAgencies() {
		f.Agencies = nil
	} else {
		f.Agencies = id.Agencies([]string{id.Agency})
	}
	if f.State != "" && f.State != ticketing.StateOpen && f.State != ticketing.StateResolved {
		httpapi.Error(w, http.StatusBadRequest, "state must be open or resolved")
		return
	}
	if v := q.Get("agency"); v != "" {
		if !id.CanRead(v) {
			// Nothing of another agency, the same answer as for one
			// without incidents; the attempt is audited.
			_ = a.guard.Authorize(r.Context(), v, map[string]any{"path": r.URL.Path})
			httpapi.OK(w, Page{Incidents: []Record{}})
			return
		}
		f.Agencies = []string{v}
	}
	if v := q.Get("since"); v != "" {
		since, err := parseSince(v, time.Now())
		if err != nil {
			httpapi.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Since = since
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			httpapi.Errorf(w, http.StatusBadRequest, "limit must be between 1 and %d", MaxPageSize)
			return
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := decodeCursor(v)
		if err != nil {
			httpapi.Error(w, http.StatusBadRequest, "invalid cursor: "+err.Error())
			return
		}
		f.After = c
	}
	recs, next, err := a.store.Page(r.Context(), f)
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, "incident store unavailable: "+err.Error())
		return
	}
	if recs == nil {
		recs = []Record{}
	}
	p := Page{Incidents: recs}
	if next != nil {
		p.Next = encodeCursor(*next)
	}
	httpapi.OK(w, p)
}

func encodeCursor(c Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.OpenedAt.UnixNano(), 10) + ":" + c.ID))
}

func decodeCursor(s string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	ts, id, ok := strings.Cut(string(b), ":")
	if !ok {
		return nil, errors.New("malformed")
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, errors.New("malformed")
	}
	return &Cursor{OpenedAt: time.Unix(0, n), ID: id}, nil
}

// parseSince accepts RFC 3339 or a Prometheus duration back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := model.ParseDuration(v); err == nil {
		return now.Add(-time.Duration(d)), nil
	}
	return time.Time{}, errors.New("since must be an RFC 3339 time or a duration such as 24h")
}

// Get serves GET /api/v1/incidents/{id}.
func (a *API) Get(w http.ResponseWriter, r *http.Request) {
	incID := r.PathValue("id")
	rec, _, err := a.store.Get(r.Context(), incID)
	if err == nil {
		if a.guard.Authorize(r.Context(), rec.Agency, map[string]any{"path": r.URL.Path}) != nil {
			err = ErrNotFound
		}
	}
	if errors.Is(err, ErrNotFound) {
		httpapi.Error(w, http.StatusNotFound, "no incident "+incID)
		return
	}
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	httpapi.OK(w, rec)
}

// Act serves POST /api/v1/incidents/{id}/{ack,assign,notes}; the route
// table lets only ops and admin reach it.
func (a *API) Act(w http.ResponseWriter, r *http.Request) {
	id, _ := tenancy.FromContext(r.Context())
	incID, action := r.PathValue("id"), r.PathValue("action")
	if id.ReadOnly {
		_ = a.guard.RequireProvider(r.Context(), true, map[string]any{"incident": incID, "action": action})
		httpapi.Error(w, http.StatusForbidden, "a read-only credential cannot change incidents")
		return
	}
	var body struct {
		Assignee string `json:"assignee"`
		Text     string `json:"text"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
			httpapi.Error(w, http.StatusBadRequest, "request body must be JSON of at most 64 KiB: "+err.Error())
			return
		}
	}
	now := time.Now()
	var f func(*Record) error
	switch action {
	case "ack":
		f = func(rec *Record) error {
			rec.Acknowledged, rec.AckedBy, rec.AckedAt = true, id.Credential, now
			return nil
		}
	case "assign":
		if body.Assignee == "" {
			httpapi.Error(w, http.StatusBadRequest, `assign needs {"assignee": "..."}`)
			return
		}
		f = func(rec *Record) error {
			rec.Assignee = body.Assignee
			rec.Notes = append(rec.Notes, ticketing.WorkLogEntry{At: now, Author: id.Credential, Text: "Assigned to " + body.Assignee + "."})
			return nil
		}
	case "notes":
		if strings.TrimSpace(body.Text) == "" {
			httpapi.Error(w, http.StatusBadRequest, `notes needs {"text": "..."}`)
			return
		}
		f = func(rec *Record) error {
			rec.Notes = append(rec.Notes, ticketing.WorkLogEntry{At: now, Author: id.Credential, Text: body.Text})
			return nil
		}
	default:
		httpapi.Error(w, http.StatusNotFound, "unknown action "+action+": use ack, assign or notes")
		return
	}
	rec, err := a.store.Update(r.Context(), incID, f)
	if errors.Is(err, ErrNotFound) {
		httpapi.Error(w, http.StatusNotFound, "no incident "+incID)
		return
	}
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	a.guard.Record(audit.Entry{Who: id.Credential, Action: "incident_" + action, Agency: rec.Agency, Detail: map[string]any{"incident": incID, "role": string(id.Role)}})
	httpapi.OK(w, rec)
}
