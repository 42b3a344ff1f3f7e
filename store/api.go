package store

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"time"

	grafanaregexp "github.com/grafana/regexp"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/samdrift/samdrift/internal/httpapi"
	"github.com/samdrift/samdrift/tenancy"
)

// APIPrefix is where the query API is served.
const APIPrefix = "/prometheus/api/v1"

// EngineOpts are the options of Samdrift's PromQL engines.
func EngineOpts(logger *slog.Logger, reg prometheus.Registerer) promql.EngineOpts {
	return promql.EngineOpts{
		Logger:               logger,
		Reg:                  reg,
		MaxSamples:           50_000_000,
		Timeout:              2 * time.Minute,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	}
}

// NewEngine returns the PromQL engine shared by the rules, reports and the
// console (the provider's own queries); the query API holds callers to
// their limits (QueryLimits).
func NewEngine(logger *slog.Logger, reg prometheus.Registerer) *promql.Engine {
	return promql.NewEngine(EngineOpts(logger, reg))
}

// APIOptions configure the query API.
type APIOptions struct {
	Engine promql.QueryEngine
	// Rules returns the rules and alerts visible to the caller in ctx.
	Rules   func(ctx context.Context) v1.RulesRetriever
	Ready   func() bool
	Logger  *slog.Logger
	Version string
	// Guard audits each agency request whose selectors name another
	// agency (cross_agency_denied): the answer holds nothing of it either
	// way.
	Guard *tenancy.Guard
	// Limits, if set, holds each caller to its agency's query limits.
	Limits *QueryLimits
}

// APIPaths are the query API's paths under APIPrefix, as net/http
// patterns. Everything else of the Prometheus API (targets, status/config,
// TSDB admin, …) would reveal other agencies or the provider's own setup
// and is not served.
var APIPaths = []string{
	"/query", "/query_range", "/query_exemplars", "/series", "/labels", "/label/{name}/values",
	"/metadata", "/rules", "/alerts", "/format_query", "/parse_query", "/status/buildinfo",
}

// servedPaths matches APIPaths (the handler's own check, should it be
// mounted elsewhere).
var servedPaths = regexp.MustCompile(`^/(query|query_range|query_exemplars|series|labels|label/[^/]+/values|metadata|rules|alerts|format_query|parse_query|status/buildinfo)$`)

// APIAllowsPost reports whether a path also takes POST (form-encoded
// parameters, for long queries), as in Prometheus.
func APIAllowsPost(path string) bool {
	switch path {
	case "/query", "/query_range", "/query_exemplars", "/series", "/labels", "/format_query", "/parse_query":
		return true
	}
	return false
}

// APIHandler serves the Prometheus HTTP API under APIPrefix, answering each
// request from the agencies its caller's identity (in the request context)
// may read. Callers must authenticate before this handler.
func (s *Store) APIHandler(o APIOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = s.logger
	}
	if o.Rules == nil {
		o.Rules = func(context.Context) v1.RulesRetriever { return noRules{} }
	}
	ready := func(f http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if o.Ready != nil && !o.Ready() {
				httpapi.Error(w, http.StatusServiceUnavailable, "samdrift is starting")
				return
			}
			f(w, r)
		}
	}
	hostname, _ := os.Hostname()
	start := time.Now()
	engine := o.Engine
	if o.Limits != nil {
		engine = o.Limits.Engine()
	}
	api := v1.NewAPI(
		engine, s.Queryable(), nil, s.ExemplarQueryable(),
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(context.Context) v1.AlertmanagerRetriever { return noTargets{} },
		func() config.Config { return config.Config{} },
		map[string]string{},
		v1.GlobalURLOptions{},
		ready,
		nil, "", false, false, 0,
		o.Logger,
		o.Rules,
		0, 1, 0,
		false,
		grafanaregexp.MustCompile(`^$`), // no CORS: browsers reach the API only through the console or Grafana's proxy
		func() (v1.RuntimeInfo, error) { return v1.RuntimeInfo{StartTime: start, Hostname: hostname}, nil },
		&v1.PrometheusVersion{Version: o.Version, Branch: "samdrift"},
		nil, nil,
		prometheus.NewRegistry(), nil,
		nil,
		false, remoteapi.MessageTypes{},
		false, false, false,
		5*time.Minute,
		false, false,
		nil,
		nil,
		v1.OpenAPIOptions{},
		nil,
		false,
		2*time.Minute,
	)
	r := route.New()
	api.Register(r.WithPrefix(APIPrefix))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rest, ok := strings.CutPrefix(req.URL.Path, APIPrefix)
		if !ok || !servedPaths.MatchString(rest) {
			httpapi.Error(w, http.StatusNotFound, "not served: "+req.URL.Path)
			return
		}
		if id, ok := tenancy.FromContext(req.Context()); ok && id.Role == tenancy.RoleAgency {
			if s.opts.Meter != nil {
				s.opts.Meter.Add(id.Agency, usageQueries, 1)
			}
			if o.Guard != nil && req.ParseForm() == nil {
				exprs := append([]string{req.Form.Get("query")}, req.Form["match[]"]...)
				if sel := tenancy.Selects(id.Agency, s.Agencies(), exprs...); len(sel.Named) > 0 {
					o.Guard.AuditCrossAgency(req.Context(), sel.Named, map[string]any{"path": req.URL.Path, "query": req.Form.Get("query"), "match": req.Form["match[]"]})
				}
			}
		}
		if strings.HasSuffix(req.URL.Path, "/rules") {
			hidePaths(w, req, r)
			return
		}
		r.ServeHTTP(w, req)
	})
	if o.Limits != nil {
		return o.Limits.Middleware(h)
	}
	return h
}

// hidePaths answers the rules API without the server's file paths: a
// group's file is shown by its base name (sla.yml for the generated rules).
func hidePaths(w http.ResponseWriter, req *http.Request, next http.Handler) {
	rec := httptest.NewRecorder()
	// An uncompressed answer, to rewrite (the API gzips for clients that
	// accept it).
	req.Header.Del("Accept-Encoding")
	next.ServeHTTP(rec, req)
	body := rec.Body.Bytes()
	var resp map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(body, &resp) == nil {
		if data, ok := resp["data"].(map[string]any); ok {
			if groups, ok := data["groups"].([]any); ok {
				for _, g := range groups {
					if gm, ok := g.(map[string]any); ok {
						if f, ok := gm["file"].(string); ok {
							gm["file"] = filepath.Base(f)
						}
					}
				}
			}
		}
		if b, err := json.Marshal(resp); err == nil {
			body = b
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

type noRules struct{}

func (noRules) RuleGroups() []*rules.Group           { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule { return nil }

// noTargets hides the collector's targets: they name every agency's hosts.
type noTargets struct{}

func (noTargets) ScrapePools() []string                                 { return nil }
func (noTargets) TargetsActive() map[string][]*scrape.Target            { return nil }
func (noTargets) TargetsDropped() map[string][]*scrape.Target           { return nil }
func (noTargets) TargetsDroppedCounts() map[string]int                  { return nil }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) { return nil, nil }
func (noTargets) Alertmanagers() []*url.URL                             { return nil }
func (noTargets) DroppedAlertmanagers() []*url.URL                      { return nil }
