package store

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	grafanaregexp "github.com/grafana/regexp"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/audit"
)

// APIPrefix is where the query API is served.
const APIPrefix = "/prometheus/api/v1"

// NewEngine returns the PromQL engine shared by the query API and the rules.
func NewEngine(logger *slog.Logger, reg prometheus.Registerer) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Logger:               logger,
		Reg:                  reg,
		MaxSamples:           50_000_000,
		Timeout:              2 * time.Minute,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
}

// APIOptions configure the query API.
type APIOptions struct {
	Engine promql.QueryEngine
	// Rules returns the rules and alerts visible to the caller in ctx.
	Rules   func(ctx context.Context) v1.RulesRetriever
	Ready   func() bool
	Logger  *slog.Logger
	Version string
	// Audit, with Agencies (every agency id), records each agency request
	// whose selectors name another agency (cross_agency_denied): the
	// answer holds nothing of it either way.
	Audit    *audit.Log
	Agencies func() []string
}

// The API paths that are served; everything else of the Prometheus API
// (targets, status/config, TSDB admin, …) would reveal other agencies or the
// provider's own setup and answers 404.
var servedPaths = regexp.MustCompile(`^/(query|query_range|query_exemplars|series|labels|label/[^/]+/values|metadata|rules|alerts|format_query|parse_query|status/buildinfo)$`)

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
				http.Error(w, "Service Unavailable: samdrift is starting", http.StatusServiceUnavailable)
				return
			}
			f(w, r)
		}
	}
	hostname, _ := os.Hostname()
	start := time.Now()
	api := v1.NewAPI(
		o.Engine, s.Queryable(), nil, s.ExemplarQueryable(),
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
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rest, ok := strings.CutPrefix(req.URL.Path, APIPrefix)
		if !ok || !servedPaths.MatchString(rest) {
			http.NotFound(w, req)
			return
		}
		if id, ok := catalogue.FromContext(req.Context()); ok && id.Role == catalogue.RoleAgency {
			if s.opts.Meter != nil {
				s.opts.Meter.Add(id.Agency, usageQueries, 1)
			}
			if o.Audit != nil && o.Agencies != nil {
				if others := OtherAgencies(req, id.Agency, o.Agencies()); len(others) > 0 {
					_ = o.Audit.Write(audit.Entry{Who: id.Credential, Action: "cross_agency_denied", Agency: id.Agency,
						Detail: map[string]any{"requested": others, "path": req.URL.Path, "query": req.Form.Get("query"), "match": req.Form["match[]"]}})
				}
			}
		}
		r.ServeHTTP(w, req)
	})
}

// OtherAgencies returns the agencies other than own that the selectors of
// a query API request (query, match[]) name with a matcher on the agency
// label. Unparseable input names none (the API answers it with an error).
func OtherAgencies(req *http.Request, own string, agencies []string) []string {
	if err := req.ParseForm(); err != nil {
		return nil
	}
	var exprs []string
	if q := req.Form.Get("query"); q != "" {
		exprs = append(exprs, q)
	}
	exprs = append(exprs, req.Form["match[]"]...)
	seen := map[string]bool{}
	var out []string
	check := func(ms []*labels.Matcher) {
		for _, m := range ms {
			if m.Name != "agency" {
				continue
			}
			for _, a := range agencies {
				if a != own && !seen[a] && m.Type != labels.MatchNotEqual && m.Type != labels.MatchNotRegexp && m.Matches(a) {
					seen[a] = true
					out = append(out, a)
				}
			}
		}
	}
	p := parser.NewParser(parser.Options{})
	for _, e := range exprs {
		expr, err := p.ParseExpr(e)
		if err != nil {
			if ms, err := p.ParseMetricSelector(e); err == nil {
				check(ms)
			}
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				check(vs.LabelMatchers)
			}
			return nil
		})
	}
	sort.Strings(out)
	return out
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
