package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// The provider's own rules (catalogue provider.rules) are alerting rules
// evaluated by one rule manager over every agency's series, read as the
// operations centre reads them (the ops identity): "probes of more than
// five agencies fail within two minutes" is one event at the provider —
// the network, DNS, the shared platform — not thirty incidents. Their
// alerts go to agency.provider.alerts, and their incidents to the
// provider's own Remedy company. They record nothing: a recorded series
// would belong to no agency, so recording rules are refused.

// opsIdentity is who the provider's rules read as.
var opsIdentity = tenancy.Identity{Role: tenancy.RoleOps, Credential: "provider-rules"}

// opsQueryable reads every agency's series as the ops role.
type opsQueryable struct{ q storage.Queryable }

func (o opsQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := o.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return opsQuerier{q}, nil
}

type opsQuerier struct{ storage.Querier }

func asOps(ctx context.Context) context.Context { return tenancy.NewContext(ctx, opsIdentity) }

func (o opsQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return o.Querier.Select(asOps(ctx), sortSeries, hints, ms...)
}

func (o opsQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return o.Querier.LabelValues(asOps(ctx), name, hints, ms...)
}

func (o opsQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return o.Querier.LabelNames(asOps(ctx), hints, ms...)
}

// discardAppendable takes the ALERTS series of the provider's rules and
// keeps nothing (their state is the incidents').
type discardAppendable struct{}

func (discardAppendable) AppenderV2(context.Context) storage.AppenderV2 { return discardAppender{} }

type discardAppender struct{}

func (discardAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, nil
}
func (discardAppender) Commit() error   { return nil }
func (discardAppender) Rollback() error { return nil }

// providerLoader loads the provider's rule files: alerting rules only.
type providerLoader struct {
	parser parser.Parser
	logger *slog.Logger
}

func (l providerLoader) Load(identifier string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	rgs, errs := rulefmt.ParseFile(identifier, ignoreUnknownFields, scheme, l.parser, l.logger)
	if errs != nil {
		return nil, errs
	}
	for _, g := range rgs.Groups {
		for i, r := range g.Rules {
			if r.Record != "" {
				errs = append(errs, fmt.Errorf("%s: group %q, rule %d: the provider's rules are alerting rules (%q records a series that would belong to no agency)", identifier, g.Name, i+1, r.Record))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rgs, nil
}

func (l providerLoader) Parse(query string) (parser.Expr, error) { return l.parser.ParseExpr(query) }

// applyProvider runs (or updates) the provider's rule manager.
func (e *Engine) applyProvider(c *catalogue.Catalogue, a *catalogue.Agency) error {
	if e.opts.AllAgencies == nil {
		return errors.New("the provider's rules need every agency's series (no all-agency queryable)")
	}
	ar := e.agencies[a.ID]
	if ar == nil {
		ctx, cancel := context.WithCancel(context.Background())
		ar = &agencyRules{id: a.ID, agency: a, cancel: cancel}
		ext, _ := url.Parse(e.opts.ExternalURL)
		q := opsQueryable{e.opts.AllAgencies}
		inner := rules.EngineQueryFunc(e.opts.Engine, q)
		logger := e.logger.With("agency", a.ID, "rules", "provider-wide")
		opts := &rules.ManagerOptions{
			ExternalURL: ext,
			QueryFunc: func(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
				return inner(asOps(ctx), qs, t)
			},
			NotifyFunc:      e.notifier(ar),
			Context:         ctx,
			AppendableV2:    discardAppendable{},
			Queryable:       q,
			Logger:          logger,
			OutageTolerance: e.opts.OutageTolerance,
			ForGracePeriod:  e.opts.ForGracePeriod,
			ResendDelay:     e.opts.ResendDelay,
			GroupLoader:     providerLoader{parser: e.parser, logger: logger},
			Metrics:         e.metrics,
			Parser:          e.parser,
		}
		ar.provider = rules.NewManager(opts)
		ar.own = rules.NewManager(opts) // no files: the pair keeps stop() uniform
		for _, m := range ar.managers() {
			go m.Run()
		}
		e.agencies[a.ID] = ar
		e.logger.Info("started the provider's rules", "files", len(a.RuleFiles))
	} else {
		ar.mu.Lock()
		ar.agency = a
		ar.mu.Unlock()
	}
	return ar.provider.Update(time.Duration(c.Defaults.EvaluationInterval), ownFiles(c, a), labels.EmptyLabels(), e.opts.ExternalURL, nil)
}
