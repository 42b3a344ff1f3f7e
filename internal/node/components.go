package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/scrape"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/collector"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/metering"
	"github.com/samdrift/samdrift/router"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/tenancy"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

// parts are the components this process runs, once set up. A nil part is
// a component another process runs.
type parts struct {
	ln          net.Listener
	addr        string
	externalURL string
	tracer      trace.TracerProvider
	// shutdownTracing flushes the spans once every actor has stopped.
	shutdownTracing func(context.Context) error
	bus             *bus.Bus
	meter           *metering.Meter
	audit           *audit.Log
	guard           *tenancy.Guard
	sessions        *tenancy.Sessions
	engine          *promql.Engine
	store           *store.Store
	router          *router.Router
	push            *collector.Push
	ruler           *rules.Engine
	incidents       *builtin.Store
	restatements    *rules.RestatementStore
	// closers release what setup opened, newest last; they run only when
	// setup fails (afterwards the actors close what they own).
	closers []func()
}

func (p *parts) onFailure(f func()) { p.closers = append(p.closers, f) }

func (p *parts) closeAll() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// setup builds every component of this process in dependency order and
// adds its actors. On error, what it opened is closed again.
func (n *Node) setup(ctx context.Context, as *actors) (p *parts, err error) {
	p = &parts{}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()
	for _, step := range []struct {
		name string
		f    func(context.Context, *parts, *actors) error
	}{
		{"listener", n.setupListener},
		{"bus", n.setupBus},
		{"tenancy", n.setupTenancy},
		{"store", n.setupStore},
		{"router", n.setupRouter},
		{"collector", n.setupCollector},
		{"rules", n.setupRules},
		{"ticketing", n.setupTicketing},
		{"background", n.setupBackground},
		{"http", n.setupHTTP},
	} {
		if err := step.f(ctx, p, as); err != nil {
			return p, fmt.Errorf("set up %s: %w", step.name, err)
		}
	}
	return p, nil
}

// setupListener listens first: a taken port fails before anything starts.
func (n *Node) setupListener(ctx context.Context, p *parts, _ *actors) error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.HTTPAddr, err)
	}
	p.onFailure(func() { _ = ln.Close() })
	p.addr = ln.Addr().String()
	p.externalURL = n.externalURL(ln)
	ln = netutil.LimitListener(ln, n.cfg.MaxConnections)
	if n.cfg.TLSCertFile != "" {
		tlsCfg, err := serverTLS(n.cfg.TLSCertFile, n.cfg.TLSKeyFile, n.cfg.ClientCAFile)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, tlsCfg)
	}
	p.ln = ln
	tp, shutdownTracing, err := newTracerProvider(ctx, n.cfg.TracingEndpoint, n.cfg.Version)
	if err != nil {
		return err
	}
	p.tracer, p.shutdownTracing = tp, shutdownTracing
	p.onFailure(func() { _ = shutdownTracing(context.Background()) })
	return nil
}

// setupBus connects to NATS (or starts the embedded server). The bus stops
// last: every other component publishes or consumes on it.
func (n *Node) setupBus(ctx context.Context, p *parts, as *actors) error {
	b, err := bus.Open(ctx, bus.Options{
		URLs: n.cfg.NATSURLs, DataDir: n.cfg.DataDir, Replicas: n.cfg.NATSReplicas,
		SyncInterval: n.cfg.NATSSyncInterval, CredsFile: n.cfg.NATSCredsFile, NKeyFile: n.cfg.NATSNKeyFile,
		TLSCAFile: n.cfg.NATSTLSCAFile, TLSCertFile: n.cfg.NATSTLSCertFile, TLSKeyFile: n.cfg.NATSTLSKeyFile,
		Logger: n.logger.With("component", "bus"), Registerer: n.reg,
	})
	if err != nil {
		return err
	}
	p.bus = b
	p.onFailure(b.Close)
	n.prober.check = func() error {
		if !b.Connected() {
			return fmt.Errorf("not connected to NATS")
		}
		return nil
	}
	as.add(actor{stage: stageBus, name: "bus", run: waitDone, after: b.Close})

	p.meter, err = metering.New(ctx, metering.Options{Bus: b, Catalogue: n.holder, Logger: n.logger.With("component", "metering"), Registerer: n.reg})
	if err != nil {
		return err
	}
	// Usage is flushed every 30s, and once more when the actor stops.
	as.add(actor{stage: stageBackground, name: "metering", run: func(ctx context.Context) error {
		p.meter.Run(ctx, 30*time.Second)
		return nil
	}})
	return nil
}

// setupTenancy makes the guard every handler asks, with its audit trail
// and the console's sessions (kept in NATS, shared by query processes).
func (n *Node) setupTenancy(ctx context.Context, p *parts, _ *actors) error {
	path := n.cfg.AuditLog
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, "audit.log")
	}
	p.audit = audit.New(path, n.logger.With("component", "audit"), n.reg)
	opts := tenancy.GuardOptions{Credentials: n.holder.Credentials, Audit: p.audit, Registerer: n.reg}
	if n.has("query") {
		kv, err := p.bus.EphemeralKeyValue(ctx, sessionsBucket, tenancy.SessionTTL)
		if err != nil {
			return err
		}
		p.sessions = tenancy.NewSessions(tenancy.KVSessionStore{KV: kv}, tenancy.SessionTTL)
		opts.Sessions = p.sessions
	}
	p.guard = tenancy.NewGuard(opts)
	p.engine = store.NewEngine(n.logger.With("component", "query"), n.reg)
	return nil
}

// sessionsBucket holds the console's sessions.
const sessionsBucket = "console_sessions"

// setupStore opens a TSDB and its consumer for every agency, in every
// process that answers queries or evaluates rules. Scale-out processes
// each keep a replica with consumers of their own; samples are then
// metered by the router.
func (n *Node) setupStore(ctx context.Context, p *parts, as *actors) error {
	if !n.has("query") && !n.has("rules") {
		return nil
	}
	n.prober.register("store")
	so := store.Options{
		Dir: filepath.Join(n.cfg.DataDir, "tsdb"), Bus: p.bus, Meter: p.meter,
		Logger: n.logger.With("component", "store"), Registerer: n.reg, Tracer: p.tracer,
		RemoteRead: n.cfg.RemoteRead,
		// A batch can reach the store after later ones: router replicas
		// hand batches on in either order, and after a crash JetStream
		// redelivers the unacknowledged batch only when its ack wait ends,
		// while newer batches flow at once. A short out-of-order window
		// stores both (the fault suite loses samples without it).
		OutOfOrderWindow: 10 * time.Minute,
	}
	if n.split() {
		so.Instance, so.NoSampleMetering = n.cfg.Instance, true
	}
	if n.cfg.Engine != nil {
		// Engine mode: every read goes to the engine; rules keep their
		// own outputs locally until the engine has them.
		so.Engine, so.EngineOutputs, so.RemoteRead = n.cfg.Engine, n.has("rules"), nil
	} else if n.has("query") && !n.split() {
		// One process: the export tails each agency's WAL, as
		// Prometheus's remote_write. (Several processes, or engine mode:
		// the routers export from the bus.)
		so.RemoteWrite = n.remoteWrite()
		if so.RemoteWrite != nil && len(so.RemoteWrite.Fallbacks) > 0 {
			return fmt.Errorf("several --remote-write.url endpoints need the export from the bus (--engine.url, or separate router processes); one process's remote write takes one")
		}
	}
	st, err := store.New(so)
	if err != nil {
		return err
	}
	p.store = st
	p.onFailure(func() { _ = st.Close() })
	if err := st.Apply(n.holder.Get()); err != nil {
		return err
	}
	n.reloaders.add("store", st.Apply)
	n.prober.ready("store")
	// The store closes after every component that appends to it has
	// stopped: its consumers finish their batch, then the TSDBs close.
	as.add(actor{stage: stageStore, name: "store", run: waitDone, after: func() { _ = st.Close() }})
	as.add(actor{stage: stageBackground, name: "offboarding-drops", run: func(ctx context.Context) error {
		return n.followDrops(ctx, p.bus, st)
	}})
	if n.cfg.Engine == nil {
		as.add(actor{stage: stageBackground, name: "series-deletions", run: func(ctx context.Context) error {
			return n.followDeletions(ctx, p.bus, st)
		}})
	}
	p.meter.Gauge(metering.Series, func() map[string]float64 { s, _ := st.Usage(); return s })
	p.meter.Gauge(metering.StoredBytes, func() map[string]float64 { _, b := st.Usage(); return b })
	return nil
}

// setupRouter creates the routers' shared consumer of INGEST; the router
// is ready once it exists.
func (n *Node) setupRouter(ctx context.Context, p *parts, as *actors) error {
	if !n.has("router") {
		return nil
	}
	logger := n.logger.With("component", "router")
	ro := router.Options{Bus: p.bus, Catalogue: n.holder, Logger: logger, Registerer: n.reg, Tracer: p.tracer}
	if n.cfg.Engine != nil {
		ro.Meter = p.meter // no local store counts the samples
	}
	if n.split() {
		ro.Meter = p.meter
		// Routers share each agency's limits: every one enforces its share
		// of the rate (Mimir's global strategy), so that the limit holds
		// however many run.
		ms, err := p.bus.NewMembership(ctx, bus.MembershipOptions{Kind: "router", Self: n.cfg.Instance, TTL: n.cfg.CollectorTTL,
			Logger: logger, Registerer: n.reg})
		if err != nil {
			return err
		}
		ro.Peers = func() int { return len(ms.Members()) }
		as.add(actor{stage: stageRouter, name: "router-membership", run: ms.Run, after: func() {
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ms.Leave(lctx)
		}})
	}
	if !n.split() && p.store != nil && n.cfg.Engine == nil {
		// One process: a push is decoded once and appended in its request
		// once the bus has it (store.Append).
		ro.Through = p.store
	}
	p.router = router.New(ro)
	if err := p.router.EnsureConsumer(ctx); err != nil {
		return err
	}
	as.add(actor{stage: stageRouter, name: "router", run: p.router.Run})
	if rw := n.remoteWrite(); rw != nil && (n.split() || n.cfg.Engine != nil) {
		// The engine is fed from the bus: every agency's routed batches
		// and rule outputs, by whichever router takes them.
		ex := store.NewExporter(store.ExporterOptions{Bus: p.bus, Remote: rw, Logger: logger.With("export", "engine"), Registerer: n.reg})
		if err := ex.Apply(n.holder.Get()); err != nil {
			return err
		}
		n.reloaders.add("export", ex.Apply)
		as.add(actor{stage: stageRouter, name: "export", run: ex.Run})
	}
	return nil
}

// setupCollector starts scraping, probing and the push receivers.
func (n *Node) setupCollector(ctx context.Context, p *parts, as *actors) error {
	if !n.has("collector") {
		return nil
	}
	n.prober.register("collector")
	logger := n.logger.With("component", "collector")
	p.meter.Gauge(metering.Targets, func() map[string]float64 { return targets(n.holder.Get()) })
	var owns func(string) bool
	if n.split() {
		// Targets are shared among the live collectors by consistent
		// hashing; a newcomer waits until the others have seen it, so
		// that no target is scraped twice.
		scrape.UserAgent = "Samdrift/" + n.cfg.Version + " collector/" + n.cfg.Instance
		ms, err := p.bus.NewMembership(ctx, bus.MembershipOptions{Kind: "collector", Self: n.cfg.Instance, TTL: n.cfg.CollectorTTL,
			Logger: logger, Registerer: n.reg})
		if err != nil {
			return err
		}
		owns = ms.Owns
		as.add(actor{stage: stageCollector, name: "collector-membership", run: ms.Run, after: func() {
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ms.Leave(lctx)
		}})
		ms.OnChange(func() { n.reloaders.applyOne("collector", n.holder.Get()) })
	}
	scr, err := collector.NewScraper(collector.Options{
		Bus: p.bus, Logger: logger, Registerer: n.reg, Tracer: p.tracer,
		Filter: func(job, address string) bool { return owns == nil || owns(job+"/"+address) },
	})
	if err != nil {
		return err
	}
	probes := collector.NewProber(collector.ProberOptions{
		Bus: p.bus, Logger: n.logger.With("component", "prober"), Registerer: n.reg, Tracer: p.tracer,
		Filter: func(key string) bool { return owns == nil || owns("probe/"+key) },
	})
	apply := func(c *catalogue.Catalogue) error {
		probes.Apply(c)
		return scr.Apply(c)
	}
	n.reloaders.add("collector", apply)
	if owns == nil {
		if err := apply(n.holder.Get()); err != nil {
			return err
		}
		n.prober.ready("collector")
	} else {
		// Scale-out: the first targets are taken once the membership has
		// settled (2s), so that the others have seen this collector.
		as.add(actor{stage: stageCollector, name: "collector-settle", run: func(ctx context.Context) error {
			select {
			case <-time.After(2 * time.Second):
				n.reloaders.applyOne("collector", n.holder.Get())
				n.prober.ready("collector")
			case <-ctx.Done():
			}
			<-ctx.Done()
			return nil
		}})
	}
	// With a router in this process, pushes are routed before their
	// sender's 2xx (one bus hop); otherwise they go to INGEST.
	p.push, err = collector.NewPush(collector.PushOptions{
		Bus: p.bus, Catalogue: n.holder, Router: p.router, MaxBodyBytes: n.cfg.PushMaxBodyBytes,
		Logger: n.logger.With("component", "push"), Registerer: n.reg, Tracer: p.tracer,
	})
	if err != nil {
		return err
	}
	as.add(actor{stage: stageCollector, name: "scraper", run: func(context.Context) error { return scr.Run() }, interrupt: scr.Stop})
	as.add(actor{stage: stageCollector, name: "prober", run: waitDone, after: probes.Stop})
	as.add(actor{stage: stageCollector, name: "push", run: waitDone, after: p.push.Close})
	return nil
}

// setupRules starts one rule manager per agency.
func (n *Node) setupRules(ctx context.Context, p *parts, as *actors) error {
	if !n.has("rules") {
		return nil
	}
	ro := rules.Options{
		Stores: p.store, Bus: p.bus, Engine: p.engine, Dir: filepath.Join(n.cfg.DataDir, "rules"), Meter: p.meter,
		ExternalURL: p.externalURL, Logger: n.logger.With("component", "rules"), Registerer: n.reg, Tracer: p.tracer,
	}
	ro.AllAgencies = p.store.Queryable() // the provider's own rules read every agency, as ops
	if n.split() || n.cfg.Engine != nil {
		// Outputs go on the bus: to the other processes' replicas, or to
		// the engine through the routers' export.
		ro.Publish = publishOutputs(p.bus)
	}
	if n.split() {
		// Rules processes share the agencies by consistent hashing: when
		// one dies, its agencies move to the others within the TTL.
		ms, err := p.bus.NewMembership(ctx, bus.MembershipOptions{Kind: "rules", Self: n.cfg.Instance, TTL: n.cfg.CollectorTTL,
			Logger: n.logger.With("component", "rules"), Registerer: n.reg})
		if err != nil {
			return err
		}
		ro.Owns = ms.Owns
		as.add(actor{stage: stageRules, name: "rules-membership", run: ms.Run, after: func() {
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ms.Leave(lctx)
		}})
		ms.OnChange(func() { n.reloaders.applyOne("rules", n.holder.Get()) })
	}
	p.ruler = rules.New(ro)
	// Invalid agency rule files are logged and counted; they do not stop
	// startup (that agency's previous rules, or none, run).
	if err := p.ruler.Apply(n.holder.Get()); err != nil {
		n.logger.Warn("some agencies' rules were not loaded", "err", err)
	}
	n.reloaders.add("rules", p.ruler.Apply)
	// Rules stop before the store closes: they append to it.
	as.add(actor{stage: stageRules, name: "rules", run: waitDone, after: p.ruler.Stop})
	return nil
}

// setupTicketing starts the incident engine and one delivery worker per
// backend; every backend's outbox consumer exists before the first alert is
// processed, so no delivery is enqueued without a reader.
func (n *Node) setupTicketing(ctx context.Context, p *parts, as *actors) error {
	if !n.has("ticketing") && !n.has("query") {
		return nil
	}
	var err error
	if p.incidents, err = builtin.Open(ctx, p.bus); err != nil {
		return err
	}
	as.add(actor{stage: stageBackground, name: "incident-index", run: p.incidents.Run})
	if n.cfg.SeedIncidents != nil {
		if err := n.cfg.SeedIncidents(ctx, p.incidents); err != nil {
			n.logger.Warn("seeding incidents", "err", err)
		}
	}
	if n.has("query") {
		kv, err := p.bus.KeyValue(ctx, bus.BucketRestatements, 64)
		if err != nil {
			return err
		}
		p.restatements = rules.NewRestatementStore(kv)
	}
	if !n.has("ticketing") {
		return nil
	}
	logger := n.logger.With("component", "ticketing")
	tk, err := ticketing.New(ctx, ticketing.Options{
		Bus: p.bus, Catalogue: n.holder, Meter: p.meter, Logger: logger, Registerer: n.reg, Tracer: p.tracer,
	})
	if err != nil {
		return err
	}
	deliveries, logout, err := n.deliveries(ctx, n.holder.Get(), p.incidents, p.externalURL, n.logger)
	if err != nil {
		return err
	}
	p.onFailure(logout)
	for _, d := range deliveries {
		if err := tk.EnsureDelivery(ctx, d); err != nil {
			return err
		}
	}
	if err := tk.PruneDeliveries(ctx, deliveries); err != nil {
		logger.Warn("prune outbox consumers", "err", err)
	}
	as.add(actor{stage: stageTicketing, name: "incident-engine", run: tk.Run})
	for _, d := range deliveries {
		as.add(actor{stage: stageTicketing, name: "delivery-" + d.Name, run: func(ctx context.Context) error { return tk.RunDelivery(ctx, d) }})
	}
	as.add(actor{stage: stageTicketing, name: "ticket-sessions", run: waitDone, after: logout})
	return nil
}

// setupBackground adds the catalogue file watcher and, in query
// processes, the incident series for dashboards.
func (n *Node) setupBackground(_ context.Context, p *parts, as *actors) error {
	as.add(actor{stage: stageBackground, name: "catalogue-watcher", run: n.watchFile})
	if n.has("query") && p.store != nil && p.incidents != nil {
		// Incidents as series, for dashboards (samdrift_incident_open).
		as.add(actor{stage: stageBackground, name: "incident-series", run: func(ctx context.Context) error {
			writeIncidentSeries(ctx, p.store, p.incidents, n.logger)
			return nil
		}})
	}
	return nil
}

// waitDone is the run of an actor whose work happens elsewhere (its own
// goroutines): it waits until the actor is interrupted.
func waitDone(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// remoteWrite is the export to a scale-out engine: --remote-write.url, else
// the catalogue's remote_write entry.
func (n *Node) remoteWrite() *store.RemoteConfig {
	if n.cfg.RemoteWrite != nil {
		return n.cfg.RemoteWrite
	}
	if rws := n.holder.Get().RemoteWrite; len(rws) > 0 {
		return &store.RemoteConfig{URL: rws[0].URL, TenantHeader: rws[0].TenantHeader}
	}
	return nil
}
