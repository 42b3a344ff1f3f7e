// Package console is Samdrift's built-in web console, for sites without
// Grafana and for the demo: a NOC wall of every agency and service for the
// operations center, and a portal where an agency, logged in with its own
// token, sees its own services, SLA figures and incidents and nothing else.
// Pages are rendered on the server with small inline SVG charts: no
// front-end build, no external requests.
package console

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

//go:embed templates/*.html
var templatesFS embed.FS

// CookieName holds the token of a logged-in console user.
const CookieName = "samdrift_session"

// Options configure the console.
type Options struct {
	Catalogue *catalogue.Holder
	Engine    promql.QueryEngine
	Queryable storage.Queryable
	Incidents *builtin.Store
	Logger    *slog.Logger
	// Audit receives denied cross-agency attempts.
	Audit   interface{ Write(audit.Entry) error }
	Now     func() time.Time
	Version string
	// Extra adds links to the agency portal (the SLA report, once built).
	ReportLinks bool
}

// Console serves the pages.
type Console struct {
	o    Options
	tmpl *template.Template
}

// New returns the console.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Audit == nil {
		o.Audit = (*audit.Log)(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	funcs := template.FuncMap{
		"pct":      pct,
		"pctDelta": func(v float64) string { return pct(v) },
		"since":    func(t time.Time) string { return o.Now().Sub(t).Round(time.Second).String() },
		"ts":       func(t time.Time) string { return t.In(o.Catalogue.Get().Location()).Format("2006-01-02 15:04") },
		"lower":    strings.ToLower,
	}
	t := template.Must(template.New("").Funcs(funcs).ParseFS(templatesFS, "templates/*.html"))
	return &Console{o: o, tmpl: t}
}

// identity returns the caller: a session cookie or a bearer token.
func (c *Console) identity(r *http.Request) (catalogue.Identity, bool) {
	cat := c.o.Catalogue.Get()
	if ck, err := r.Cookie(CookieName); err == nil {
		if id, ok := cat.Authenticate(ck.Value); ok {
			return id, true
		}
	}
	return cat.Authenticate(catalogue.BearerToken(r))
}

// Handler serves /, /login, /logout, /agency/{id} and /runbooks.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.home)
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) { c.loginPage(w, "", http.StatusOK) })
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.logout)
	mux.HandleFunc("GET /agency/{id}", c.agencyPage)
	mux.HandleFunc("GET /agency/{id}/report", c.reportPage)
	mux.HandleFunc("GET /runbooks", func(w http.ResponseWriter, r *http.Request) { c.render(w, "runbooks.html", c.base(nil)) })
	return securityHeaders(mux)
}

// securityHeaders forbids external loads and framing.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

type page struct {
	Provider string
	Version  string
	Now      string
	Identity *catalogue.Identity
	Who      string
	Error    string
	Refresh  int
	Wall     []agencyView
	Agency   *agencyView
	Reports  bool
}

func (c *Console) base(id *catalogue.Identity) page {
	cat := c.o.Catalogue.Get()
	p := page{Provider: cat.Provider.Name, Version: c.o.Version, Now: c.o.Now().In(cat.Location()).Format("2006-01-02 15:04:05 MST"), Identity: id, Reports: c.o.ReportLinks}
	if id != nil {
		p.Who = id.Credential
	}
	return p
}

func (c *Console) render(w http.ResponseWriter, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := c.tmpl.ExecuteTemplate(w, name, p); err != nil {
		c.o.Logger.Error("render console page", "page", name, "err", err)
	}
}

func (c *Console) loginPage(w http.ResponseWriter, msg string, code int) {
	p := c.base(nil)
	p.Error = msg
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := c.tmpl.ExecuteTemplate(w, "login.html", p); err != nil {
		c.o.Logger.Error("render login", "err", err)
	}
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.loginPage(w, "The form could not be read.", http.StatusBadRequest)
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	if _, ok := c.o.Catalogue.Get().Authenticate(token); !ok {
		c.loginPage(w, "That token is not valid.", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	id, ok := c.identity(r)
	if !ok {
		c.loginPage(w, "", http.StatusOK)
		return
	}
	if id.Role == catalogue.RoleAgency {
		http.Redirect(w, r, "/agency/"+id.Agency, http.StatusSeeOther)
		return
	}
	ctx := catalogue.NewContext(r.Context(), id)
	p := c.base(&id)
	p.Refresh = 30
	p.Wall = c.views(ctx, id, nil)
	c.render(w, "wall.html", p)
}

func (c *Console) agencyPage(w http.ResponseWriter, r *http.Request) {
	id, ok := c.identity(r)
	if !ok {
		c.loginPage(w, "", http.StatusOK)
		return
	}
	want := r.PathValue("id")
	a := c.o.Catalogue.Get().Agency(want)
	if a == nil || !id.CanRead(want) {
		if id.Role == catalogue.RoleAgency && id.Agency != want {
			_ = c.o.Audit.Write(audit.Entry{Who: id.Credential, Action: "cross_agency_denied", Agency: id.Agency, Detail: map[string]any{"requested": want, "path": r.URL.Path}})
		}
		// The same answer whether the agency exists or not.
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	ctx := catalogue.NewContext(r.Context(), id)
	p := c.base(&id)
	p.Refresh = 60
	views := c.views(ctx, id, a)
	if len(views) == 1 {
		p.Agency = &views[0]
	}
	c.render(w, "agency.html", p)
}

// ---- data ----

type agencyView struct {
	ID, Name, Phase string
	Services        []serviceView
	Incidents       []incidentView
	OpenIncidents   int
	Maintenance     []string
	Status          string // ok, warn, crit, none
}

type serviceView struct {
	ID, Name, Tier string
	Objective      float64
	HasSLA         bool
	MTD            *float64
	Budget         *float64
	Status         string // ok (meets), crit (misses), none (no data)
	Alert          string // PAGE, TICKET, DOWN or ""
	Spark          template.HTML
	OpenIncidents  int
}

type incidentView struct {
	ID, Service, Priority, State, Ticket, Summary string
	OpenedAt                                      time.Time
	Duration                                      string
	Open                                          bool
}

func (c *Console) instant(ctx context.Context, q string) promql.Vector {
	qry, err := c.o.Engine.NewInstantQuery(ctx, c.o.Queryable, nil, q, c.o.Now())
	if err != nil {
		return nil
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	v, _ := res.Vector()
	return v
}

func (c *Console) series(ctx context.Context, q string, from time.Time, step time.Duration) map[string][]float64 {
	qry, err := c.o.Engine.NewRangeQuery(ctx, c.o.Queryable, nil, q, from, c.o.Now(), step)
	if err != nil {
		return nil
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	m, _ := res.Matrix()
	out := map[string][]float64{}
	for _, s := range m {
		k := s.Metric.Get("agency") + "/" + s.Metric.Get("service")
		for _, p := range s.Floats {
			out[k] = append(out[k], p.F)
		}
	}
	return out
}

// views gathers what the pages show, for the agencies the caller may read
// (only a when set). Every figure comes through the scoped store.
func (c *Console) views(ctx context.Context, id catalogue.Identity, only *catalogue.Agency) []agencyView {
	cat := c.o.Catalogue.Get()
	byKey := func(v promql.Vector) map[string]float64 {
		m := map[string]float64{}
		for _, s := range v {
			m[s.Metric.Get("agency")+"/"+s.Metric.Get("service")] = s.F
		}
		return m
	}
	mtd := byKey(c.instant(ctx, `sla:availability:mtd`))
	budget := byKey(c.instant(ctx, `sla:error_budget_remaining:month`))
	alerts := map[string]string{}
	for _, s := range c.instant(ctx, `ALERTS{alertstate="firing",alertname=~"SLAErrorBudgetBurnFast|SLAErrorBudgetBurnSlow|ServiceDown"}`) {
		k := s.Metric.Get("agency") + "/" + s.Metric.Get("service")
		label := map[string]string{"SLAErrorBudgetBurnFast": "PAGE", "SLAErrorBudgetBurnSlow": "TICKET", "ServiceDown": "DOWN"}[s.Metric.Get("alertname")]
		if rank(label) > rank(alerts[k]) {
			alerts[k] = label
		}
	}
	span := 24 * time.Hour
	step := 30 * time.Minute
	if only != nil {
		span, step = 7*24*time.Hour, 3*time.Hour
	}
	sparks := c.series(ctx, `sla:availability:ratio_rate5m`, c.o.Now().Add(-span), step)

	var incs []builtin.Record
	if c.o.Incidents != nil {
		f := builtin.Filter{Since: c.o.Now().Add(-30 * 24 * time.Hour)}
		if !id.AllAgencies() {
			f.Agencies = []string{id.Agency}
		}
		incs, _ = c.o.Incidents.List(ctx, f)
	}
	var out []agencyView
	for _, a := range cat.Agencies {
		if (only != nil && a.ID != only.ID) || !id.CanRead(a.ID) {
			continue
		}
		av := agencyView{ID: a.ID, Name: a.Name, Phase: string(a.Phase), Status: "none"}
		for _, w := range a.MaintenanceWindows(c.o.Now(), c.o.Now().Add(30*24*time.Hour)) {
			av.Maintenance = append(av.Maintenance, w.Start.In(a.Location()).Format("Mon 2006-01-02 15:04")+" – "+w.End.In(a.Location()).Format("15:04"))
		}
		for _, inc := range incs {
			if inc.Agency != a.ID {
				continue
			}
			iv := incidentView{ID: inc.ID, Service: inc.Service, Priority: inc.Priority, State: inc.State, Ticket: inc.Ticket, Summary: inc.Summary, OpenedAt: inc.OpenedAt, Open: inc.Open()}
			end := c.o.Now()
			if !inc.Open() {
				end = inc.ResolvedAt
			}
			iv.Duration = end.Sub(inc.OpenedAt).Round(time.Minute).String()
			av.Incidents = append(av.Incidents, iv)
			if inc.Open() {
				av.OpenIncidents++
			}
		}
		for _, s := range a.Services {
			k := a.ID + "/" + s.ID
			sv := serviceView{ID: s.ID, Name: s.Name, Tier: s.Tier, Status: "none", Alert: alerts[k]}
			if s.SLA != nil {
				sv.HasSLA, sv.Objective = true, s.SLA.Availability/100
			}
			if v, ok := mtd[k]; ok {
				sv.MTD = &v
				sv.Status = "ok"
				if sv.HasSLA && v < sv.Objective {
					sv.Status = "crit"
				}
			}
			if v, ok := budget[k]; ok {
				sv.Budget = &v
			}
			for _, inc := range av.Incidents {
				if inc.Service == s.ID && inc.Open {
					sv.OpenIncidents++
				}
			}
			sv.Spark = sparkline(sparks[k], sv.Objective)
			av.Services = append(av.Services, sv)
			switch {
			case sv.Status == "crit" || sv.Alert == "PAGE" || sv.Alert == "DOWN":
				av.Status = "crit"
			case (sv.Alert != "" || sv.OpenIncidents > 0) && av.Status != "crit":
				av.Status = "warn"
			case sv.Status == "ok" && av.Status == "none":
				av.Status = "ok"
			}
		}
		sort.SliceStable(av.Incidents, func(i, j int) bool {
			if av.Incidents[i].Open != av.Incidents[j].Open {
				return av.Incidents[i].Open
			}
			return av.Incidents[i].OpenedAt.After(av.Incidents[j].OpenedAt)
		})
		out = append(out, av)
	}
	return out
}

func rank(s string) int {
	return map[string]int{"": 0, "TICKET": 1, "PAGE": 2, "DOWN": 3}[s]
}

// reportPage renders the agency's monthly SLA report (?month=YYYY-MM,
// default the current month) for download.
func (c *Console) reportPage(w http.ResponseWriter, r *http.Request) {
	id, ok := c.identity(r)
	if !ok {
		c.loginPage(w, "", http.StatusOK)
		return
	}
	want := r.PathValue("id")
	cat := c.o.Catalogue.Get()
	a := cat.Agency(want)
	if a == nil || !id.CanRead(want) {
		if id.Role == catalogue.RoleAgency && id.Agency != want {
			_ = c.o.Audit.Write(audit.Entry{Who: id.Credential, Action: "cross_agency_denied", Agency: id.Agency, Detail: map[string]any{"requested": want, "path": r.URL.Path}})
		}
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	month := r.URL.Query().Get("month")
	if month == "" {
		month = c.o.Now().In(a.Location()).Format("2006-01")
	}
	ctx := catalogue.NewContext(r.Context(), id)
	var recs []builtin.Record
	if c.o.Incidents != nil {
		recs, _ = c.o.Incidents.List(ctx, builtin.Filter{Agencies: []string{a.ID}})
	}
	rep, err := report.Build(ctx, c.o.Engine, c.o.Queryable, cat, a.ID, month, recs, c.o.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := report.HTML(rep)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="sla-%s-%s.html"`, a.ID, month))
	_, _ = w.Write(b)
}
