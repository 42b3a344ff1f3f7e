package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	v1 "github.com/prometheus/prometheus/web/api/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// Stores gives the rules an agency's TSDB.
type Stores interface {
	DB(agency string) *tsdb.DB
}

// Options configure the rule engine.
type Options struct {
	Stores Stores
	// Bus receives the alerts (agency.<id>.alerts); nil drops them.
	Bus    *bus.Bus
	Engine promql.QueryEngine
	// Dir holds the generated rule files, Dir/<agency>/sla.yml.
	Dir         string
	ExternalURL string
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	Tracer      trace.TracerProvider
	// ResendDelay is how often a firing alert is sent again (Prometheus's
	// --rules.alert.resend-delay).
	ResendDelay time.Duration
	// OutageTolerance and ForGracePeriod govern restoring `for` state after a
	// restart, as Prometheus's flags of the same names. The grace period is 0
	// by default: a pending alert keeps the time it has already waited, so a
	// restart delays it by no more than the restart took.
	OutageTolerance time.Duration
	ForGracePeriod  time.Duration
	// Publish, if set, also hands every rule output to the bus
	// (agency.<id>.metrics) for store replicas in other processes.
	Publish PublishFunc
	// Meter counts rule evaluations and alerts per agency (optional).
	Meter interface {
		Add(agency, kind string, n float64)
	}
	// AllAgencies reads every agency's series (scoped by the identity in the
	// context): what the provider's own rules read, as ops.
	AllAgencies storage.Queryable
	// Owns, if set, says which agencies this process evaluates (rules
	// processes share the agencies by consistent hashing); the others'
	// managers stop. Apply again when the answer may have changed.
	Owns func(agency string) bool
}

// Engine runs one Prometheus rule manager per agency.
type Engine struct {
	opts      Options
	logger    *slog.Logger
	tracer    trace.Tracer
	metrics   *rules.Metrics
	calendar  *Calendar
	parser    parser.Parser
	failures  *prometheus.CounterVec
	sent      *prometheus.CounterVec
	evaluated prometheus.Gauge

	mu       sync.Mutex
	agencies map[string]*agencyRules
}

// agencyRules are an agency's two rule managers: the provider's (the SLA
// rules generated from the catalogue, whose outputs are the provider's
// series) and the agency's own rule files, whose outputs can never pass for
// the provider's (see sanitizingAppendable).
type agencyRules struct {
	id       string
	agency   *catalogue.Agency
	provider *rules.Manager
	own      *rules.Manager
	loader   *loader // the own manager's, which checks the agency's files
	cancel   context.CancelFunc
	mu       sync.RWMutex // guards agency, read by the calendar and notifier
}

func (ar *agencyRules) managers() []*rules.Manager { return []*rules.Manager{ar.provider, ar.own} }

func (ar *agencyRules) stop() {
	for _, m := range ar.managers() {
		m.Stop()
	}
	ar.cancel()
}

func (ar *agencyRules) get() *catalogue.Agency {
	ar.mu.RLock()
	defer ar.mu.RUnlock()
	return ar.agency
}

// New returns a rule engine; Apply starts the catalogue's rules.
func New(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.ResendDelay == 0 {
		o.ResendDelay = time.Minute
	}
	if o.OutageTolerance == 0 {
		o.OutageTolerance = time.Hour
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e := &Engine{
		opts:     o,
		logger:   o.Logger,
		tracer:   o.Tracer.Tracer("github.com/samdrift/samdrift/rules"),
		metrics:  rules.NewGroupMetrics(reg),
		calendar: NewCalendar(),
		parser:   parser.NewParser(parser.Options{}),
		agencies: map[string]*agencyRules{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_rules_load_failures_total",
			Help: "Rule reloads refused for an agency (its previous rules kept running).",
		}, []string{"agency"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samdrift_rules_alerts_sent_total",
			Help: "Alerts published on agency.<id>.alerts, by state.",
		}, []string{"agency", "state"}),
	}
	e.evaluated = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "samdrift_rules_agencies",
		Help: "Agencies whose rules this process evaluates (its share, where rules processes share them).",
	})
	reg.MustRegister(e.failures, e.sent, e.evaluated)
	return e
}

// Apply (re)loads the rules of every agency that accepts data and stops
// those of the others. An agency whose rule files are invalid keeps the rules
// it was running; the error names the agency and every problem.
func (e *Engine) Apply(c *catalogue.Catalogue) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	want := map[string]*catalogue.Agency{}
	for _, a := range c.Agencies {
		if a.Phase.AcceptsData() && (e.opts.Owns == nil || e.opts.Owns(a.ID)) {
			want[a.ID] = a
		}
	}
	if pa := c.ProviderAgency(); pa != nil && (e.opts.Owns == nil || e.opts.Owns(pa.ID)) {
		want[pa.ID] = pa
	}
	for id, ar := range e.agencies {
		if want[id] == nil {
			ar.stop()
			delete(e.agencies, id)
			e.logger.Info("stopped agency rules", "agency", id)
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	e.evaluated.Set(float64(len(ids)))
	for _, id := range ids {
		if err := e.applyAgency(c, want[id]); err != nil {
			e.failures.WithLabelValues(id).Inc()
			e.logger.Error("agency rules not (re)loaded; previous rules keep running", "agency", id, "err", err)
			errs = append(errs, fmt.Errorf("agency %q: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// RuleFiles returns the paths of an agency's rule files: the generated SLA
// rules (written first) and its own files, relative to the catalogue.
func (e *Engine) RuleFiles(c *catalogue.Catalogue, a *catalogue.Agency) ([]string, error) {
	gen, err := e.generatedFiles(c, a)
	if err != nil {
		return nil, err
	}
	return append(gen, ownFiles(c, a)...), nil
}

// ownFiles are the paths of the agency's own rule files.
func ownFiles(c *catalogue.Catalogue, a *catalogue.Agency) []string {
	var files []string
	base := filepath.Dir(c.File())
	for _, f := range a.RuleFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(base, f)
		}
		files = append(files, f)
	}
	return files
}

// generatedFiles writes the agency's generated SLA rules and returns their
// path (none when it has nothing to measure).
func (e *Engine) generatedFiles(c *catalogue.Catalogue, a *catalogue.Agency) ([]string, error) {
	var files []string
	gen, err := GenerateSLA(c, a, e.opts.ExternalURL)
	if err != nil {
		return nil, err
	}
	if gen != nil {
		dir := filepath.Join(e.opts.Dir, a.ID)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "sla.yml")
		if err := writeIfChanged(path, gen); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

func writeIfChanged(path string, b []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (e *Engine) applyAgency(c *catalogue.Catalogue, a *catalogue.Agency) error {
	if a.ID == catalogue.ProviderID {
		return e.applyProvider(c, a)
	}
	db := e.opts.Stores.DB(a.ID)
	if db == nil {
		return fmt.Errorf("no store for agency %q", a.ID)
	}
	generated, err := e.generatedFiles(c, a)
	if err != nil {
		return err
	}
	ar := e.agencies[a.ID]
	if ar == nil {
		ctx, cancel := context.WithCancel(context.Background())
		ar = &agencyRules{id: a.ID, agency: a, cancel: cancel}
		ext, _ := url.Parse(e.opts.ExternalURL)
		opts := func(app storage.AppendableV2, loader rules.GroupLoader, logger *slog.Logger) *rules.ManagerOptions {
			return &rules.ManagerOptions{
				ExternalURL:     ext,
				QueryFunc:       rules.EngineQueryFunc(e.opts.Engine, e.queryable(a.ID, db)),
				NotifyFunc:      e.notifier(ar),
				Context:         ctx,
				AppendableV2:    app,
				Queryable:       e.queryable(a.ID, db),
				Logger:          logger,
				OutageTolerance: e.opts.OutageTolerance,
				ForGracePeriod:  e.opts.ForGracePeriod,
				ResendDelay:     e.opts.ResendDelay,
				GroupLoader:     loader,
				Metrics:         e.metrics,
				Parser:          e.parser,
			}
		}
		logger := e.logger.With("agency", a.ID)
		ar.provider = rules.NewManager(opts(e.appendable(a.ID, db), nil, logger.With("rules", "provider")))
		ar.loader = &loader{agency: a.ID, catalogue: c, parser: e.parser, logger: e.logger}
		ar.own = rules.NewManager(opts(sanitizingAppendable{e.appendable(a.ID, db), a.ID}, ar.loader, logger.With("rules", "agency")))
		for _, m := range ar.managers() {
			go m.Run()
		}
		e.agencies[a.ID] = ar
		e.logger.Info("started agency rules", "agency", a.ID, "files", len(generated)+len(a.RuleFiles))
	} else {
		ar.mu.Lock()
		ar.agency = a
		ar.mu.Unlock()
		e.calendar.Forget(a.ID)
		ar.loader.catalogue = c
	}
	eval := time.Duration(c.Defaults.EvaluationInterval)
	if err := ar.provider.Update(eval, generated, labels.EmptyLabels(), e.opts.ExternalURL, e.iteration(ar, db)); err != nil {
		return fmt.Errorf("generated rules: %w", err)
	}
	return ar.own.Update(eval, ownFiles(c, a), labels.EmptyLabels(), e.opts.ExternalURL, e.iteration(ar, db))
}

// queryable is what the agency's rules read: its store's queryable (the
// TSDB, with remote read where configured).
func (e *Engine) queryable(agency string, db *tsdb.DB) storage.Queryable {
	if qs, ok := e.opts.Stores.(interface {
		AgencyQueryable(string) storage.SampleAndChunkQueryable
	}); ok {
		if q := qs.AgencyQueryable(agency); q != nil {
			return q
		}
	}
	return db
}

// appendable is where the agency's rule outputs go.
func (e *Engine) appendable(agency string, db *tsdb.DB) storage.AppendableV2 {
	if e.opts.Publish == nil {
		return db
	}
	return teeAppendable{local: db, agency: agency, publish: e.opts.Publish}
}

// iteration writes the agency's calendar before each evaluation of its slot
// rules, at the evaluation's own timestamp.
func (e *Engine) iteration(ar *agencyRules, db *tsdb.DB) rules.GroupEvalIterationFunc {
	return func(ctx context.Context, g *rules.Group, ts time.Time) {
		if g.Name() == slotGroup {
			app := db.Appender(ctx)
			if e.opts.Publish != nil {
				app = &teeAppender{Appender: app, ctx: ctx, agency: ar.id, publish: e.opts.Publish}
			}
			if err := e.calendar.Write(ctx, app, ar.get(), ts); err != nil {
				_ = app.Rollback()
				e.logger.Warn("write SLA calendar", "agency", ar.id, "err", err)
			} else if err := app.Commit(); err != nil {
				e.logger.Warn("write SLA calendar", "agency", ar.id, "err", err)
			}
		}
		rules.DefaultEvalIterationFunc(ctx, g, ts)
		if e.opts.Meter != nil {
			e.opts.Meter.Add(ar.id, "rule_evaluations", float64(len(g.Rules())))
		}
	}
}

// Stop stops every agency's rules.
func (e *Engine) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, ar := range e.agencies {
		ar.stop()
		delete(e.agencies, id)
	}
}

// Retriever returns the rules and alerts the caller in ctx may see: an
// agency its own, ops and admin every agency's. Without an identity, none.
func (e *Engine) Retriever(ctx context.Context) v1.RulesRetriever {
	id, ok := tenancy.FromContext(ctx)
	if !ok {
		return retriever(nil)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ms []*rules.Manager
	for aid, ar := range e.agencies {
		if id.CanRead(aid) {
			ms = append(ms, ar.managers()...)
		}
	}
	return retriever(ms)
}

type retriever []*rules.Manager

func (r retriever) RuleGroups() []*rules.Group {
	var out []*rules.Group
	for _, m := range r {
		out = append(out, m.RuleGroups()...)
	}
	return out
}

func (r retriever) AlertingRules() []*rules.AlertingRule {
	var out []*rules.AlertingRule
	for _, m := range r {
		out = append(out, m.AlertingRules()...)
	}
	return out
}

// notifier publishes the alerts the rule manager wants sent (firing ones
// again every ResendDelay, resolved ones for a while after) on
// agency.<id>.alerts. Every alert carries the agency's label, whatever the
// rule's expression kept, and maintenance="true" if it began inside a
// maintenance window.
func (e *Engine) notifier(ar *agencyRules) rules.NotifyFunc {
	return func(ctx context.Context, expr string, alerts ...*rules.Alert) {
		if len(alerts) == 0 || e.opts.Bus == nil {
			return
		}
		a := ar.get()
		ctx, span := e.tracer.Start(ctx, "rules.notify", trace.WithAttributes(attribute.String("agency", a.ID), attribute.Int("alerts", len(alerts))))
		defer span.End()
		out := make([]bus.Alert, 0, len(alerts))
		for _, al := range alerts {
			ba := bus.Alert{
				Labels:       al.Labels.Map(),
				Annotations:  al.Annotations.Map(),
				StartsAt:     al.FiredAt,
				GeneratorURL: e.opts.ExternalURL + "/graph?g0.expr=" + url.QueryEscape(expr),
			}
			if ba.Labels["agency"] != a.ID {
				if v, ok := ba.Labels["agency"]; ok {
					ba.Labels["exported_agency"] = v
				}
				ba.Labels["agency"] = a.ID
			}
			if a.InMaintenance(al.ActiveAt) {
				ba.Labels["maintenance"] = "true"
			}
			state := "firing"
			if !al.ResolvedAt.IsZero() {
				ba.EndsAt = al.ResolvedAt
				state = "resolved"
			} else {
				ba.EndsAt = al.ValidUntil
			}
			e.sent.WithLabelValues(a.ID, state).Inc()
			out = append(out, ba)
		}
		if e.opts.Meter != nil && a.ID != catalogue.ProviderID {
			e.opts.Meter.Add(a.ID, "alerts", float64(len(out)))
		}
		data, err := json.Marshal(out)
		if err != nil {
			return
		}
		msg := &nats.Msg{Subject: bus.AgencySubject(a.ID, bus.KindAlerts), Data: data, Header: nats.Header{}}
		bus.InjectTrace(ctx, msg)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := e.opts.Bus.Publish(pctx, msg, ""); err != nil {
			// The rule manager sends again at the next evaluation.
			e.logger.Warn("publish alerts", "agency", a.ID, "err", err)
		}
	}
}

// loader loads rule files like Prometheus and refuses rules that select
// another agency's data.
type loader struct {
	agency    string
	catalogue *catalogue.Catalogue
	parser    parser.Parser
	logger    *slog.Logger
}

func (l *loader) Load(identifier string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	rgs, errs := rulefmt.ParseFile(identifier, ignoreUnknownFields, scheme, l.parser, l.logger)
	if errs != nil {
		return nil, errs
	}
	errs = append(CheckIsolation(rgs, l.agency, l.catalogue, l.parser), CheckReserved(rgs)...)
	if len(errs) > 0 {
		for i := range errs {
			errs[i] = fmt.Errorf("%s: %w", identifier, errs[i])
		}
		return nil, errs
	}
	return rgs, nil
}

func (l *loader) Parse(query string) (parser.Expr, error) { return l.parser.ParseExpr(query) }

// CheckIsolation refuses rules whose selectors name another agency of the
// catalogue (tenancy.Selects decides): an agency's rules read its own store
// only, and a rule that seems to read another agency's data is a mistake or
// an attempt.
func CheckIsolation(rgs *rulefmt.RuleGroups, agency string, c *catalogue.Catalogue, _ parser.Parser) []error {
	var errs []error
	ids := c.AgencyIDs()
	for _, g := range rgs.Groups {
		for i, r := range g.Rules {
			if sel := tenancy.Selects(agency, ids, r.Expr); len(sel.Named) > 0 {
				errs = append(errs, fmt.Errorf("group %q, rule %d, %q: its selectors name agency %q: an agency's rules can only read its own data", g.Name, i+1, r.Record+r.Alert, sel.Named[0]))
			}
		}
	}
	return errs
}
