package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/internal/metering"
	"github.com/samdrift/samdrift/internal/onboard"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

// admin serves the administration API under /api/v1/admin/ (the route
// table says who may call what):
//
//	GET    usage?month=2026-10           usage records and cost shares
//	GET    agencies/{id}                 the agency as this process sees it
//	GET    agencies/{id}/export          tar.gz: TSDB snapshot and incidents
//	DELETE agencies/{id}/data            delete the agency's data; intake must be stopped
//	GET    deadletters[?agency=]         messages a stage gave up on, with the reason
//	POST   deadletters/{seq}/replay      put one back where it came from
//	DELETE deadletters/{seq}             discard one
//	GET    reload                        the last catalogue reload, per component
//	GET    sla/restatements?agency=[&month=]  an agency's SLA restatements
//	POST   sla/restatements              restate a window: {agency, service, from, to, kind, reason}
//	DELETE sla/restatements/{agency}/{id}?reason=  withdraw one (kept on record)
//	POST   series/delete                 delete an agency's series: {agency, selector, start, end, dry_run}
type admin struct {
	n *Node
	p *parts
}

// UsageRow is a usage record with its cost share.
type UsageRow struct {
	metering.Record
	FundedBy string  `json:"funded_by"`
	Share    float64 `json:"share"`
}

func (a *admin) usage(w http.ResponseWriter, r *http.Request) {
	recs, err := a.p.meter.Month(r.Context(), r.URL.Query().Get("month"))
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	shares := metering.Shares(recs)
	rows := make([]UsageRow, len(recs))
	for i, rec := range recs {
		rows[i] = UsageRow{Record: rec, FundedBy: metering.Funded(rec.Phase), Share: shares[i]}
	}
	httpapi.OK(w, rows)
}

func (a *admin) agency(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ag := a.n.holder.Get().Agency(id)
	out := map[string]any{"id": id, "in_catalogue": ag != nil, "has_data": a.p.store.DB(id) != nil}
	if ag != nil {
		out["phase"] = ag.Phase
	}
	httpapi.OK(w, out)
}

// intakeStopped reports whether the agency gets no more data: it is in
// phase plan, or gone from the catalogue.
func (a *admin) intakeStopped(id string) bool {
	ag := a.n.holder.Get().Agency(id)
	return ag == nil || !ag.Phase.AcceptsData()
}

// export streams a tar.gz of the agency's TSDB snapshot (tsdb/) and its
// incidents (incidents.json).
func (a *admin) export(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	db := a.p.store.DB(id)
	if db == nil && a.n.holder.Get().Agency(id) == nil {
		httpapi.Error(w, http.StatusNotFound, "no agency "+id)
		return
	}
	tmp, err := os.MkdirTemp("", "samdrift-export-")
	if err != nil {
		httpapi.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer os.RemoveAll(tmp)
	if db == nil {
		// Never received data: the export still says so, with an empty TSDB.
		err = os.Mkdir(filepath.Join(tmp, "tsdb"), 0o700)
	} else {
		err = db.Snapshot(filepath.Join(tmp, "tsdb"), true)
	}
	if err == nil {
		// An empty WAL makes the export a TSDB that promtool tsdb and
		// prometheus --storage.tsdb.path open as it is.
		err = os.MkdirAll(filepath.Join(tmp, "tsdb", "wal"), 0o700)
	}
	if err != nil {
		httpapi.Error(w, http.StatusInternalServerError, "snapshot: "+err.Error())
		return
	}
	recs, err := a.p.incidents.List(r.Context(), builtin.Filter{Agencies: []string{id}})
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if recs == nil {
		recs = []builtin.Record{}
	}
	b, _ := json.MarshalIndent(recs, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "incidents.json"), b, 0o600); err != nil {
		httpapi.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="samdrift-%s-%s.tar.gz"`, id, time.Now().UTC().Format("20060102T150405Z")))
	if err := onboard.WriteTarGz(w, tmp); err != nil {
		a.n.logger.Error("export agency", "agency", id, "err", err)
	}
}

// drop deletes every piece of the agency's data: its TSDB, its incidents and
// their state, and what the bus still holds of it.
func (a *admin) drop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.intakeStopped(id) {
		httpapi.Error(w, http.StatusConflict, fmt.Sprintf("agency %q still receives data: move it to phase plan (or remove it) first", id))
		return
	}
	if err := a.p.store.Drop(id); err != nil {
		httpapi.Error(w, http.StatusInternalServerError, "delete store: "+err.Error())
		return
	}
	n, err := a.p.incidents.DeleteAgency(r.Context(), id)
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, "delete incidents: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	for _, s := range []struct{ stream, subject string }{
		{bus.StreamMetrics, bus.AgencySubject(id, bus.KindMetrics)},
		{bus.StreamAlerts, bus.AgencySubject(id, bus.KindAlerts)},
		{bus.StreamOutbox, bus.OutboxSubject(id)},
		{bus.StreamDeadLetter, bus.DeadLetterSubject(id, "*")},
	} {
		_ = a.p.bus.PurgeSubject(ctx, s.stream, s.subject)
	}
	if kv, err := a.p.bus.KeyValue(ctx, bus.BucketIncidentState, 1); err == nil {
		if lister, err := kv.ListKeysFiltered(ctx, id+".*"); err == nil {
			for k := range lister.Keys() {
				_ = kv.Purge(ctx, k)
			}
		}
	}
	// Every other store replica deletes its copy too.
	if err := recordDrop(ctx, a.p.bus, id); err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, "record deletion for the other replicas: "+err.Error())
		return
	}
	id0, _ := tenancy.FromContext(r.Context())
	a.p.guard.Record(audit.Entry{Who: id0.Credential, Action: "agency_data_deleted", Agency: id, Detail: map[string]any{"incidents": n}})
	httpapi.OK(w, map[string]any{"agency": id, "incidents_deleted": n})
}

// deadLetters lists dead letters, of one agency with ?agency=.
func (a *admin) deadLetters(w http.ResponseWriter, r *http.Request) {
	agency := r.URL.Query().Get("agency")
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			httpapi.Error(w, http.StatusBadRequest, "limit must be between 1 and 10000")
			return
		}
		limit = n
	}
	dls, err := a.p.bus.DeadLetters(r.Context(), agency, limit)
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, "list dead letters: "+err.Error())
		return
	}
	if dls == nil {
		dls = []bus.DeadLetter{}
	}
	httpapi.OK(w, dls)
}

func (a *admin) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	a.deadLetterAction(w, r, "deadletter_replayed", a.p.bus.ReplayDeadLetter)
}

func (a *admin) discardDeadLetter(w http.ResponseWriter, r *http.Request) {
	a.deadLetterAction(w, r, "deadletter_discarded", a.p.bus.DiscardDeadLetter)
}

func (a *admin) deadLetterAction(w http.ResponseWriter, r *http.Request, action string, f func(context.Context, uint64) (bus.DeadLetter, error)) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "a dead letter is named by its sequence number")
		return
	}
	dl, err := f(r.Context(), seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		httpapi.Errorf(w, http.StatusNotFound, "no dead letter %d", seq)
		return
	}
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	id, _ := tenancy.FromContext(r.Context())
	a.p.guard.Record(audit.Entry{Who: id.Credential, Action: action, Agency: dl.Agency, Detail: map[string]any{"seq": seq, "stage": dl.Stage, "reason": dl.Reason, "subject": dl.Subject}})
	httpapi.OK(w, dl)
}

// restatementRequest is the body of POST /api/v1/admin/sla/restatements.
type restatementRequest struct {
	Agency  string    `json:"agency"`
	Service string    `json:"service"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Kind    string    `json:"kind"`
	Reason  string    `json:"reason"`
}

// restate records an SLA restatement (admin): the affected month's figures
// are computed from the slots and the restatements in force.
func (a *admin) restate(w http.ResponseWriter, r *http.Request) {
	var req restatementRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "body: want JSON {agency, service, from, to, kind, reason}: "+err.Error())
		return
	}
	id, _ := tenancy.FromContext(r.Context())
	rs, err := a.p.restatements.Add(r.Context(), a.n.holder.Get(), rules.Restatement{
		Agency: req.Agency, Service: req.Service, From: req.From, To: req.To, Kind: req.Kind, Reason: req.Reason,
	}, id.Credential, time.Now())
	switch {
	case errors.Is(err, rules.ErrRestatementConflict):
		httpapi.Error(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	a.p.guard.Record(audit.Entry{Who: id.Credential, Action: "sla_restated", Agency: rs.Agency, Detail: map[string]any{
		"id": rs.ID, "service": rs.Service, "from": rs.From, "to": rs.To, "kind": rs.Kind, "reason": rs.Reason}})
	httpapi.OK(w, rs)
}

// listRestatements lists an agency's restatements (?agency=, required;
// ?month=YYYY-MM narrows to those touching the month).
func (a *admin) listRestatements(w http.ResponseWriter, r *http.Request) {
	agency, month := r.URL.Query().Get("agency"), r.URL.Query().Get("month")
	ag := a.n.holder.Get().Agency(agency)
	if ag == nil {
		httpapi.Error(w, http.StatusBadRequest, "agency: name a catalogue agency")
		return
	}
	rs, err := a.p.restatements.List(r.Context(), agency)
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	out := []rules.Restatement{}
	for _, x := range rs {
		if month != "" {
			start, end, err := rules.MonthBounds(month, ag.Location())
			if err != nil {
				httpapi.Error(w, http.StatusBadRequest, err.Error())
				return
			}
			if !x.From.Before(end) || !x.To.After(start) {
				continue
			}
		}
		out = append(out, x)
	}
	httpapi.OK(w, out)
}

// withdrawRestatement withdraws a restatement (admin; ?reason= required):
// the record stays, marked withdrawn, and the figures no longer use it.
func (a *admin) withdrawRestatement(w http.ResponseWriter, r *http.Request) {
	id, _ := tenancy.FromContext(r.Context())
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		httpapi.Error(w, http.StatusBadRequest, "reason: say why the restatement is withdrawn (?reason=…)")
		return
	}
	rs, err := a.p.restatements.Withdraw(r.Context(), r.PathValue("agency"), r.PathValue("id"), id.Credential, reason, time.Now())
	switch {
	case errors.Is(err, rules.ErrNoRestatement):
		httpapi.Error(w, http.StatusNotFound, err.Error())
		return
	case errors.Is(err, rules.ErrRestatementConflict):
		httpapi.Error(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	a.p.guard.Record(audit.Entry{Who: id.Credential, Action: "sla_restatement_withdrawn", Agency: rs.Agency, Detail: map[string]any{
		"id": rs.ID, "service": rs.Service, "reason": reason}})
	httpapi.OK(w, rs)
}

// seriesDeleteRequest is the body of POST /api/v1/admin/series/delete.
type seriesDeleteRequest struct {
	Agency   string    `json:"agency"`
	Selector string    `json:"selector"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// DryRun (the default) counts the series without deleting them.
	DryRun *bool `json:"dry_run"`
}

// deleteSeries deletes an agency's series matching a selector in a time
// range (admin; a dry run unless dry_run is false), from the agency's own
// store only, and records the deletion in the audit log.
func (a *admin) deleteSeries(w http.ResponseWriter, r *http.Request) {
	var req seriesDeleteRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "body: want JSON {agency, selector, start, end, dry_run}: "+err.Error())
		return
	}
	if a.n.holder.Get().Agency(req.Agency) == nil {
		httpapi.Error(w, http.StatusBadRequest, "agency: name a catalogue agency")
		return
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(req.Selector)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "selector: "+err.Error())
		return
	}
	if req.Start.IsZero() || req.End.IsZero() || req.End.Before(req.Start) {
		httpapi.Error(w, http.StatusBadRequest, "start and end: RFC 3339 times, start before end")
		return
	}
	dry := req.DryRun == nil || *req.DryRun
	n, err := a.p.store.DeleteSeries(r.Context(), req.Agency, ms, req.Start.UnixMilli(), req.End.UnixMilli(), dry)
	switch {
	case errors.Is(err, store.ErrNoLocalStore):
		httpapi.Error(w, http.StatusNotImplemented, "series deletion needs the agency's store in this process (in engine mode delete in the engine)")
		return
	case err != nil:
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	id, _ := tenancy.FromContext(r.Context())
	if !dry {
		// Every other store replica deletes its copy too (and this one
		// again, for batches still on their way).
		if err := recordDeletion(r.Context(), a.p.bus, seriesDeletion{Agency: req.Agency, Selector: req.Selector, Start: req.Start, End: req.End, At: time.Now().UTC()}); err != nil {
			httpapi.Error(w, http.StatusServiceUnavailable, "deleted here, but not recorded for the other replicas: "+err.Error())
			return
		}
		a.p.guard.Record(audit.Entry{Who: id.Credential, Action: "series_deleted", Agency: req.Agency, Detail: map[string]any{
			"selector": req.Selector, "start": req.Start, "end": req.End, "series": n}})
	}
	httpapi.OK(w, map[string]any{"agency": req.Agency, "selector": req.Selector, "start": req.Start, "end": req.End, "series": n, "deleted": !dry && n > 0, "dry_run": dry})
}
