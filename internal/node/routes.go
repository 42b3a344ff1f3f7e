package node

import (
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/dashboards/console"
	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

// access is who may call a route before its handler authorises further.
type access string

const (
	// public: anyone (health and readiness).
	public access = "public"
	// caller: any valid credential (bearer token or client certificate);
	// the handler decides what the caller's identity may see or do.
	caller access = "credential"
	// provider: an ops or admin credential.
	provider access = "ops, admin"
	// adminOnly: an admin credential.
	adminOnly access = "admin"
	// browser: the console's pages, signed in by a session cookie (or a
	// bearer token); state-changing requests must come from its own pages.
	browser access = "console session"
)

// route is one endpoint of the HTTP surface.
type route struct {
	// pattern is a net/http pattern with its method ("GET /path").
	pattern string
	access  access
	handler http.Handler
}

// routes is the HTTP surface of this process: every endpoint, who may call
// it and what serves it, in one table. Components this process does not
// run contribute none.
func (n *Node) routes(p *parts) []route {
	h := func(f http.HandlerFunc) http.Handler { return f }
	rs := []route{
		{"GET /-/healthy", public, h(n.prober.healthy)},
		{"GET /-/ready", public, h(n.prober.readyHandler)},
	}
	// /metrics names every agency (ingest, usage, rule groups): it is the
	// provider's unless the site protects it otherwise.
	metrics := promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg})
	if n.cfg.MetricsAnonymous {
		rs = append(rs, route{"GET /metrics", public, metrics})
	} else {
		rs = append(rs, route{"GET /metrics", provider, metrics})
	}
	if n.cfg.Pprof {
		// One route for the subtree: a path of its own beside it would
		// conflict with its 405 fallback.
		rs = append(rs, route{"GET /debug/pprof/", provider, h(func(w http.ResponseWriter, r *http.Request) {
			switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
			case "profile":
				pprof.Profile(w, r)
			case "symbol":
				pprof.Symbol(w, r)
			case "trace":
				pprof.Trace(w, r)
			default:
				pprof.Index(w, r) // the index and the named profiles (heap, goroutine, …)
			}
		})})
	}
	if p.push != nil {
		rs = append(rs,
			route{"POST /api/v1/push", caller, p.push.RemoteWrite()},
			route{"POST /otlp/v1/metrics", caller, p.push.OTLP()},
			route{"POST /api/v1/alerts", caller, p.push.Alerts()},
		)
	}
	if n.has("query") && p.store != nil {
		api := p.store.APIHandler(store.APIOptions{
			Engine: p.engine, Ready: n.prober.isReady, Logger: n.logger.With("component", "query"), Version: n.cfg.Version,
			Guard: p.guard, Rules: p.rulesRetriever(),
			Limits: store.NewQueryLimits(p.engine, store.EngineOpts(n.logger.With("component", "query"), nil), n.queryLimits, n.reg),
		})
		for _, path := range store.APIPaths {
			rs = append(rs, route{"GET " + store.APIPrefix + path, caller, api})
			if store.APIAllowsPost(path) {
				rs = append(rs, route{"POST " + store.APIPrefix + path, caller, api})
			}
		}
	}
	if p.incidents != nil && n.has("query") {
		inc := builtin.NewAPI(p.incidents, p.guard)
		rs = append(rs,
			route{"GET " + builtin.APIPrefix, caller, h(inc.List)},
			route{"GET " + builtin.APIPrefix + "/{id}", caller, h(inc.Get)},
			route{"POST " + builtin.APIPrefix + "/{id}/{action}", provider, h(inc.Act)},
		)
	}
	if n.has("query") && p.store != nil {
		rp := &reports{holder: n.holder, engine: p.engine, queryable: p.store.Queryable(), incidents: p.incidents, restated: p.restatements, guard: p.guard}
		ad := &admin{n: n, p: p}
		rs = append(rs,
			route{"GET /api/v1/reports/sla", caller, rp},
			route{"GET /api/v1/admin/usage", provider, h(ad.usage)},
			route{"GET /api/v1/admin/agencies/{id}", adminOnly, h(ad.agency)},
			route{"GET /api/v1/admin/agencies/{id}/export", adminOnly, h(ad.export)},
			route{"DELETE /api/v1/admin/agencies/{id}/data", adminOnly, h(ad.drop)},
			route{"GET /api/v1/admin/deadletters", provider, h(ad.deadLetters)},
			route{"POST /api/v1/admin/deadletters/{seq}/replay", adminOnly, h(ad.replayDeadLetter)},
			route{"DELETE /api/v1/admin/deadletters/{seq}", adminOnly, h(ad.discardDeadLetter)},
			route{"GET /api/v1/admin/reload", provider, h(n.reloaders.statusHandler)},
			route{"GET /api/v1/admin/sla/restatements", provider, h(ad.listRestatements)},
			route{"POST /api/v1/admin/sla/restatements", adminOnly, h(ad.restate)},
			route{"DELETE /api/v1/admin/sla/restatements/{agency}/{id}", adminOnly, h(ad.withdrawRestatement)},
			route{"POST /api/v1/admin/series/delete", adminOnly, h(ad.deleteSeries)},
		)
		c := console.New(console.Options{
			Catalogue: n.holder, Guard: p.guard, Sessions: p.sessions, Engine: p.engine, Queryable: p.store.Queryable(),
			Incidents: p.incidents, Restatements: p.restatements, Logger: n.logger.With("component", "console"), Version: n.cfg.Version, ReportLinks: true,
		})
		for _, cr := range c.Routes() {
			rs = append(rs, route{cr.Pattern, browser, cr.Handler})
		}
	}
	for prefix, hd := range n.cfg.Mount {
		rs = append(rs, route{"GET " + prefix, public, hd})
	}
	return rs
}

// mux serves the routes, authenticating each by its access. A path that
// exists with another method answers 405 in the API envelope.
func (n *Node) mux(p *parts, rs []route) *http.ServeMux {
	mux := http.NewServeMux()
	methods := map[string][]string{}
	for _, r := range rs {
		method, path, _ := strings.Cut(r.pattern, " ")
		methods[path] = append(methods[path], method)
		mux.Handle(r.pattern, n.protect(p, r))
	}
	for path, ms := range methods {
		if path == "/{$}" || strings.HasSuffix(path, "/") && !strings.HasPrefix(path, "/api/") {
			continue // the console's pages answer their own 404s
		}
		allow := strings.Join(ms, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			httpapi.Errorf(w, http.StatusMethodNotAllowed, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
		})
	}
	return mux
}

// protect wraps a route's handler with what its access needs.
func (n *Node) protect(p *parts, r route) http.Handler {
	switch r.access {
	case caller:
		return p.guard.Authenticate(r.handler)
	case provider, adminOnly:
		adminOnly := r.access == adminOnly
		return p.guard.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if err := p.guard.RequireProvider(req.Context(), adminOnly, map[string]any{"path": req.URL.Path, "method": req.Method}); err != nil {
				tenancy.Deny(w, err)
				return
			}
			r.handler.ServeHTTP(w, req)
		}))
	case browser:
		// Forms must come from the console itself (Origin and
		// Sec-Fetch-Site), never from another site.
		return http.NewCrossOriginProtection().Handler(r.handler)
	default:
		return r.handler
	}
}

// queryLimits are a caller's query limits: its agency's, or the catalogue's
// defaults for the provider's own credentials.
func (n *Node) queryLimits(id tenancy.Identity) catalogue.Limits {
	c := n.holder.Get()
	if a := c.Agency(id.Agency); id.Role == tenancy.RoleAgency && a != nil {
		return a.EffectiveLimits()
	}
	return c.DefaultLimits()
}
