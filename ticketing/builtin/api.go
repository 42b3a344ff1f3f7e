package builtin

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/ticketing"
)

// APIPrefix is where the incidents API is served.
const APIPrefix = "/api/v1/incidents"

// Auditor records audit events.
type Auditor interface {
	Write(audit.Entry) error
}

// API serves GET /api/v1/incidents (the caller's incidents) and, for ops
// and admin, POST /api/v1/incidents/{id}/{ack,assign,notes}. Callers must be
// authenticated before it. Actions and refused actions go to the audit log.
func API(s *Store, aud Auditor) http.Handler {
	if aud == nil {
		aud = (*audit.Log)(nil)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := catalogue.FromContext(r.Context())
		if !ok {
			writeErr(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		rest := strings.Trim(strings.TrimPrefix(r.URL.Path, APIPrefix), "/")
		switch {
		case rest == "" && r.Method == http.MethodGet:
			list(w, r, s, id)
		case rest != "" && r.Method == http.MethodGet && !strings.Contains(rest, "/"):
			get(w, r, s, id, rest)
		case rest != "" && r.Method == http.MethodPost:
			act(w, r, s, id, rest, aud)
		default:
			writeErr(w, http.StatusMethodNotAllowed, "use GET "+APIPrefix+" or POST "+APIPrefix+"/{id}/{ack,assign,notes}")
		}
	})
}

type envelope struct {
	Status string `json:"status"`
	Data   any    `json:"data,omitempty"`
	Error  string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, envelope{Status: "error", Error: msg})
}

func scope(id catalogue.Identity) []string {
	if id.AllAgencies() {
		return nil
	}
	if id.Role == catalogue.RoleAgency {
		return []string{id.Agency}
	}
	return []string{}
}

func list(w http.ResponseWriter, r *http.Request, s *Store, id catalogue.Identity) {
	q := r.URL.Query()
	f := Filter{Agencies: scope(id), State: q.Get("state"), Service: q.Get("service")}
	if f.State != "" && f.State != ticketing.StateOpen && f.State != ticketing.StateResolved {
		writeErr(w, http.StatusBadRequest, "state must be open or resolved")
		return
	}
	if v := q.Get("agency"); v != "" {
		if !id.CanRead(v) {
			writeJSON(w, http.StatusOK, envelope{Status: "success", Data: []Record{}})
			return
		}
		f.Agencies = []string{v}
	}
	if v := q.Get("since"); v != "" {
		since, err := parseSince(v, time.Now())
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Since = since
	}
	recs, err := s.List(r.Context(), f)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "incident store unavailable: "+err.Error())
		return
	}
	if recs == nil {
		recs = []Record{}
	}
	writeJSON(w, http.StatusOK, envelope{Status: "success", Data: recs})
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

func get(w http.ResponseWriter, r *http.Request, s *Store, id catalogue.Identity, incID string) {
	rec, _, err := s.Get(r.Context(), incID)
	if errors.Is(err, ErrNotFound) || (err == nil && !id.CanRead(rec.Agency)) {
		writeErr(w, http.StatusNotFound, "no incident "+incID)
		return
	}
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, envelope{Status: "success", Data: rec})
}

func act(w http.ResponseWriter, r *http.Request, s *Store, id catalogue.Identity, rest string, aud Auditor) {
	incID, action, ok := strings.Cut(rest, "/")
	if !ok {
		writeErr(w, http.StatusNotFound, "use POST "+APIPrefix+"/{id}/{ack,assign,notes}")
		return
	}
	if !id.AllAgencies() || id.ReadOnly {
		_ = aud.Write(audit.Entry{Who: id.Credential, Action: "incident_" + action + "_denied", Agency: id.Agency, Detail: map[string]any{"incident": incID}})
		writeErr(w, http.StatusForbidden, "acknowledging, assigning and annotating incidents needs an ops or admin credential")
		return
	}
	var body struct {
		Assignee string `json:"assignee"`
		Text     string `json:"text"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
			writeErr(w, http.StatusBadRequest, "request body must be JSON: "+err.Error())
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
			writeErr(w, http.StatusBadRequest, `assign needs {"assignee": "..."}`)
			return
		}
		f = func(rec *Record) error {
			rec.Assignee = body.Assignee
			rec.Notes = append(rec.Notes, ticketing.WorkLogEntry{At: now, Author: id.Credential, Text: "Assigned to " + body.Assignee + "."})
			return nil
		}
	case "notes":
		if strings.TrimSpace(body.Text) == "" {
			writeErr(w, http.StatusBadRequest, `notes needs {"text": "..."}`)
			return
		}
		f = func(rec *Record) error {
			rec.Notes = append(rec.Notes, ticketing.WorkLogEntry{At: now, Author: id.Credential, Text: body.Text})
			return nil
		}
	default:
		writeErr(w, http.StatusNotFound, "unknown action "+action+": use ack, assign or notes")
		return
	}
	rec, err := s.Update(r.Context(), incID, f)
	if errors.Is(err, ErrNotFound) {
		writeErr(w, http.StatusNotFound, "no incident "+incID)
		return
	}
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	_ = aud.Write(audit.Entry{Who: id.Credential, Action: "incident_" + action, Agency: rec.Agency, Detail: map[string]any{"incident": incID, "role": string(id.Role)}})
	writeJSON(w, http.StatusOK, envelope{Status: "success", Data: rec})
}
