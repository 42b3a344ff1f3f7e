package node

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/metering"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

// admin serves the administration API, under /api/v1/admin/:
//
//	GET    usage?month=2026-10           usage records and cost shares (ops, admin)
//	GET    agencies/{id}                 the agency as this process sees it (admin)
//	GET    agencies/{id}/export          tar.gz: TSDB snapshot and incidents (admin)
//	DELETE agencies/{id}/data            delete the agency's data; intake must be stopped (admin)
type admin struct {
	n         *Node
	st        *store.Store
	b         *bus.Bus
	incidents *builtin.Store
	meter     *metering.Meter
	audit     *audit.Log
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/admin/usage", a.usage)
	mux.HandleFunc("GET /api/v1/admin/agencies/{id}", a.agency)
	mux.HandleFunc("GET /api/v1/admin/agencies/{id}/export", a.export)
	mux.HandleFunc("DELETE /api/v1/admin/agencies/{id}/data", a.drop)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := catalogue.FromContext(r.Context())
		allowed := ok && !id.ReadOnly && (id.Role == catalogue.RoleAdmin || (id.Role == catalogue.RoleOps && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/usage")))
		if !allowed {
			_ = a.audit.Write(audit.Entry{Who: id.Credential, Action: "admin_denied", Agency: id.Agency, Detail: map[string]any{"path": r.URL.Path, "method": r.Method}})
			jsonError(w, http.StatusForbidden, "the admin API needs an admin credential")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": msg})
}

func jsonOK(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
}

// UsageRow is a usage record with its cost share.
type UsageRow struct {
	metering.Record
	FundedBy string  `json:"funded_by"`
	Share    float64 `json:"share"`
}

func (a *admin) usage(w http.ResponseWriter, r *http.Request) {
	recs, err := a.meter.Month(r.Context(), r.URL.Query().Get("month"))
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	shares := metering.Shares(recs)
	rows := make([]UsageRow, len(recs))
	for i, rec := range recs {
		rows[i] = UsageRow{Record: rec, FundedBy: metering.Funded(rec.Phase), Share: shares[i]}
	}
	jsonOK(w, rows)
}

func (a *admin) agency(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ag := a.n.holder.Get().Agency(id)
	out := map[string]any{"id": id, "in_catalogue": ag != nil, "has_data": a.st.DB(id) != nil}
	if ag != nil {
		out["phase"] = ag.Phase
	}
	jsonOK(w, out)
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
	db := a.st.DB(id)
	if db == nil && a.n.holder.Get().Agency(id) == nil {
		jsonError(w, http.StatusNotFound, "no agency "+id)
		return
	}
	tmp, err := os.MkdirTemp("", "samdrift-export-")
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
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
		jsonError(w, http.StatusInternalServerError, "snapshot: "+err.Error())
		return
	}
	recs, err := a.incidents.List(r.Context(), builtin.Filter{Agencies: []string{id}})
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if recs == nil {
		recs = []builtin.Record{}
	}
	b, _ := json.MarshalIndent(recs, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "incidents.json"), b, 0o600); err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="samdrift-%s-%s.tar.gz"`, id, time.Now().UTC().Format("20060102T150405Z")))
	if err := writeTarGz(w, tmp); err != nil {
		a.n.logger.Error("export agency", "agency", id, "err", err)
	}
}

func writeTarGz(w io.Writer, dir string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// drop deletes every piece of the agency's data: its TSDB, its incidents and
// their state, and what the bus still holds of it.
func (a *admin) drop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.intakeStopped(id) {
		jsonError(w, http.StatusConflict, fmt.Sprintf("agency %q still receives data: move it to phase plan (or remove it) first", id))
		return
	}
	if err := a.st.Drop(id); err != nil {
		jsonError(w, http.StatusInternalServerError, "delete store: "+err.Error())
		return
	}
	n, err := a.incidents.DeleteAgency(r.Context(), id)
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, "delete incidents: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	for _, s := range []struct{ stream, subject string }{
		{bus.StreamMetrics, bus.AgencySubject(id, bus.KindMetrics)},
		{bus.StreamAlerts, bus.AgencySubject(id, bus.KindAlerts)},
	} {
		if st, err := a.b.JS.Stream(ctx, s.stream); err == nil {
			_ = st.Purge(ctx, jetstream.WithPurgeSubject(s.subject))
		}
	}
	if kv, err := a.b.KeyValue(ctx, bus.BucketIncidentState, 1); err == nil {
		if lister, err := kv.ListKeysFiltered(ctx, id+".*"); err == nil {
			for k := range lister.Keys() {
				_ = kv.Purge(ctx, k)
			}
		}
	}
	// Every other store replica deletes its copy too.
	if err := recordDrop(ctx, a.b, id); err != nil {
		jsonError(w, http.StatusServiceUnavailable, "record deletion for the other replicas: "+err.Error())
		return
	}
	id0, _ := catalogue.FromContext(r.Context())
	_ = a.audit.Write(audit.Entry{Who: id0.Credential, Action: "agency_data_deleted", Agency: id, Detail: map[string]any{"incidents": n}})
	jsonOK(w, map[string]any{"agency": id, "incidents_deleted": n})
}
