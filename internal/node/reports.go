package node

import (
	"net/http"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

// reports serves GET /api/v1/reports/sla?agency=ID&month=YYYY-MM[&format=html]:
// an agency its own report only, ops and admin any.
type reports struct {
	holder    *catalogue.Holder
	engine    promql.QueryEngine
	queryable storage.Queryable
	incidents *builtin.Store
	restated  *rules.RestatementStore
	guard     *tenancy.Guard
}

func (rp *reports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, _ := tenancy.FromContext(r.Context())
	agency, month := r.URL.Query().Get("agency"), r.URL.Query().Get("month")
	if agency == "" && id.Role == tenancy.RoleAgency {
		agency = id.Agency
	}
	if rp.guard.Authorize(r.Context(), agency, map[string]any{"path": r.URL.Path}) != nil {
		// The same answer whether the agency exists or not.
		httpapi.Error(w, http.StatusNotFound, "no such agency")
		return
	}
	cat := rp.holder.Get()
	a := cat.Agency(agency)
	if a == nil {
		httpapi.Error(w, http.StatusNotFound, "no such agency")
		return
	}
	if month == "" {
		month = time.Now().In(a.Location()).Format("2006-01")
	}
	recs, err := rp.incidents.List(r.Context(), builtin.Filter{Agencies: []string{agency}})
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	var rs []rules.Restatement
	if rp.restated != nil {
		if rs, err = rp.restated.List(r.Context(), agency); err != nil {
			httpapi.Error(w, http.StatusServiceUnavailable, "restatements: "+err.Error())
			return
		}
	}
	rep, err := report.Build(r.Context(), rp.engine, rp.queryable, cat, agency, month, recs, rs, time.Now())
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.URL.Query().Get("format") == "html" {
		b, err := report.HTML(rep)
		if err != nil {
			httpapi.Error(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_, _ = w.Write(b)
		return
	}
	httpapi.OK(w, rep)
}
