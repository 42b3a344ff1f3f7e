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
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards/report"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

//go:embed templates/*.html
var templatesFS embed.FS

// Options configure the console.
type Options struct {
	Catalogue *catalogue.Holder
	// Guard identifies callers (session cookie or bearer token) and audits
	// refused cross-agency pages.
	Guard *tenancy.Guard
	// Sessions are the sign-in sessions; nil allows bearer tokens only.
	Sessions  *tenancy.Sessions
	Engine    promql.QueryEngine
	Queryable storage.Queryable
	Incidents *builtin.Store
	// Restatements, if set, correct the month figures shown and are listed
	// with their reasons in the agency's portal.
	Restatements *rules.RestatementStore
	Logger       *slog.Logger
	Now          func() time.Time
	Version      string
	// ReportLinks adds links to the agency's monthly SLA report.
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
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Guard == nil {
		o.Guard = tenancy.NewGuard(tenancy.GuardOptions{Credentials: o.Catalogue.Credentials})
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
func (c *Console) identity(r *http.Request) (tenancy.Identity, bool) {
	return c.o.Guard.IdentifySession(r)
}

// Route is one page of the console.
type Route struct {
	Pattern string
	Handler http.Handler
}

// Routes are the console's pages: /, /login, /logout, /agency/{id},
// /agency/{id}/report and /runbooks.
func (c *Console) Routes() []Route {
	h := func(f http.HandlerFunc) http.Handler { return securityHeaders(f) }
	return []Route{
		{"GET /{$}", h(c.home)},
		{"GET /login", h(func(w http.ResponseWriter, r *http.Request) { c.loginPage(w, "", http.StatusOK) })},
		{"POST /login", h(c.login)},
		{"POST /logout", h(c.logout)},
		{"GET /agency/{id}", h(c.agencyPage)},
		{"GET /agency/{id}/report", h(c.reportPage)},
		{"GET /runbooks", h(func(w http.ResponseWriter, r *http.Request) { c.render(w, "runbooks.html", c.base(nil)) })},
	}
}

// Handler serves the console's routes alone (tests, fuzzing).
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range c.Routes() {
		mux.Handle(r.Pattern, r.Handler)
	}
	return http.NewCrossOriginProtection().Handler(mux)
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
	Identity *tenancy.Identity
	Who      string
	Error    string
	Refresh  int
	Wall     []agencyView
	Agency   *agencyView
	Reports  bool
}

func (c *Console) base(id *tenancy.Identity) page {
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

// login exchanges a token for a session: the cookie holds a random session
// id with an expiry, never the token.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.loginPage(w, "The form could not be read.", http.StatusBadRequest)
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	id, ok := c.o.Catalogue.Get().Authenticate(token)
	if !ok {
		c.loginPage(w, "That token is not valid.", http.StatusUnauthorized)
		return
	}
	if c.o.Sessions == nil {
		c.loginPage(w, "Sign-in is not available here; use a bearer token.", http.StatusServiceUnavailable)
		return
	}
	sid, err := c.o.Sessions.Create(r.Context(), id)
	if err != nil {
		c.o.Logger.Error("create console session", "err", err)
		c.loginPage(w, "Sign-in is unavailable right now; try again.", http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tenancy.SessionCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(c.o.Sessions.TTL().Seconds())})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout revokes the session on the server and clears the cookie.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(tenancy.SessionCookie); err == nil && c.o.Sessions != nil {
		if err := c.o.Sessions.Revoke(r.Context(), ck.Value); err != nil {
			c.o.Logger.Warn("revoke console session", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: tenancy.SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	id, ok := c.identity(r)
	if !ok {
		c.loginPage(w, "", http.StatusOK)
		return
	}
	if id.Role == tenancy.RoleAgency {
		http.Redirect(w, r, "/agency/"+id.Agency, http.StatusSeeOther)
		return
	}
	ctx := tenancy.NewContext(r.Context(), id)
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
	ctx := tenancy.NewContext(r.Context(), id)
	a := c.o.Catalogue.Get().Agency(want)
	if c.o.Guard.Authorize(ctx, want, map[string]any{"path": r.URL.Path}) != nil || a == nil {
		// The same answer whether the agency exists or not.
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
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
	// Restatements of this month, with their reasons.
	Restatements []rules.Restatement
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
	// Latency objective: the share of requests within LatencyThreshold
	// this month (nil: no objective or no data yet).
	HasLatency       bool
	LatencyObjective float64
	LatencyThreshold string
	LatencyMTD       *float64
}

type incidentView struct {
	ID, Service, Priority, State, Ticket, Summary string
	OpenedAt                                      time.Time
	Duration                                      string
	Open                                          bool
}

// instant runs q, scoped to the agencies shown (tenancy.ScopeSet).
func (c *Console) instant(ctx context.Context, agencies []string, q string) promql.Vector {
	q, err := tenancy.ScopeSet(q, agencies)
	if err != nil {
		c.o.Logger.Error("console query", "err", err)
		return nil
	}
	qry, err := c.o.Engine.NewInstantQuery(ctx, c.o.Queryable, nil, q, c.o.Now())
	if err != nil {
		return nil
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	v, _ := res.Vector()
	return v
}

// series runs q over a range, scoped to the agencies shown.
func (c *Console) series(ctx context.Context, agencies []string, q string, from time.Time, step time.Duration) map[string][]float64 {
	q, err := tenancy.ScopeSet(q, agencies)
	if err != nil {
		c.o.Logger.Error("console query", "err", err)
		return nil
	}
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
func (c *Console) views(ctx context.Context, id tenancy.Identity, only *catalogue.Agency) []agencyView {
	cat := c.o.Catalogue.Get()
	byKey := func(v promql.Vector) map[string]float64 {
		m := map[string]float64{}
		for _, s := range v {
			m[s.Metric.Get("agency")+"/"+s.Metric.Get("service")] = s.F
		}
		return m
	}
	var shown []string
	for _, a := range cat.Agencies {
		if (only == nil || a.ID == only.ID) && id.CanRead(a.ID) {
			shown = append(shown, a.ID)
		}
	}
	mtd := byKey(c.instant(ctx, shown, `sla:availability:mtd`))
	budget := byKey(c.instant(ctx, shown, `sla:error_budget_remaining:month`))
	latency := byKey(c.instant(ctx, shown, `sla:latency:mtd`))
	alerts := map[string]string{}
	for _, s := range c.instant(ctx, shown, `ALERTS{alertstate="firing",alertname=~"SLAErrorBudgetBurnFast|SLAErrorBudgetBurnSlow|ServiceDown"}`) {
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
	sparks := c.series(ctx, shown, `sla:availability:ratio_rate5m`, c.o.Now().Add(-span), step)

	var incs []builtin.Record
	if c.o.Incidents != nil {
		f := builtin.Filter{Since: c.o.Now().Add(-30 * 24 * time.Hour)}
		if !id.AllAgencies() {
			f.Agencies = []string{id.Agency}
		}
		incs, _ = c.o.Incidents.List(ctx, f)
	}
	// Every agency's restatements, in one read.
	var allRestated map[string][]rules.Restatement
	if c.o.Restatements != nil {
		allRestated, _ = c.o.Restatements.ListAll(ctx)
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
		// This month's restatements in force replace the recorded month
		// figures by the ones computed from the slots and restatements.
		restated, applied := c.restated(ctx, cat, a, allRestated[a.ID])
		av.Restatements = applied
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
			if f, ok := restated[s.ID]; ok && f.HasData && sv.HasSLA {
				mtdV, budgetV := f.Availability, 1-f.BudgetUsed
				sv.MTD, sv.Budget = &mtdV, &budgetV
				sv.Status = "ok"
				if mtdV < sv.Objective {
					sv.Status = "crit"
				}
			}
			if s.SLA != nil && s.SLA.Latency != nil {
				sv.HasLatency, sv.LatencyObjective = true, s.SLA.Latency.Objective/100
				sv.LatencyThreshold = strconv.FormatFloat(s.SLA.Latency.Threshold*1000, 'f', -1, 64) + " ms"
				if v, ok := latency[k]; ok {
					sv.LatencyMTD = &v
				}
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

// restated computes this month's figures of an agency with its
// restatements in force (none: nothing to compute, the recorded figures
// stand), and returns the month's restatements.
func (c *Console) restated(ctx context.Context, cat *catalogue.Catalogue, a *catalogue.Agency, rs []rules.Restatement) (map[string]rules.MonthFigure, []rules.Restatement) {
	month := rules.MonthOf(c.o.Now(), a.Location())
	start, end, err := rules.MonthBounds(month, a.Location())
	if err != nil {
		return nil, nil
	}
	var inMonth []rules.Restatement
	for _, r := range rs {
		if r.From.Before(end) && r.To.After(start) {
			inMonth = append(inMonth, r)
		}
	}
	if len(inMonth) == 0 {
		return nil, nil
	}
	figs, err := rules.Month(ctx, c.o.Engine, c.o.Queryable, cat, a, month, c.o.Now())
	if err != nil {
		return nil, nil
	}
	figs, applied, err := rules.Restate(ctx, c.o.Engine, c.o.Queryable, cat, a, month, figs, inMonth)
	if err != nil {
		return nil, nil
	}
	out := map[string]rules.MonthFigure{}
	for _, f := range figs {
		out[f.Service] = f
	}
	return out, applied
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
	ctx := tenancy.NewContext(r.Context(), id)
	if c.o.Guard.Authorize(ctx, want, map[string]any{"path": r.URL.Path}) != nil || a == nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	month := r.URL.Query().Get("month")
	if month == "" {
		month = c.o.Now().In(a.Location()).Format("2006-01")
	}
	var recs []builtin.Record
	if c.o.Incidents != nil {
		recs, _ = c.o.Incidents.List(ctx, builtin.Filter{Agencies: []string{a.ID}})
	}
	var rs []rules.Restatement
	if c.o.Restatements != nil {
		rs, _ = c.o.Restatements.List(ctx, a.ID)
	}
	rep, err := report.Build(ctx, c.o.Engine, c.o.Queryable, cat, a.ID, month, recs, rs, c.o.Now())
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
