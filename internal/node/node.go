package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/scrape"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/collector"
	"github.com/samdrift/samdrift/dashboards/console"
	"github.com/samdrift/samdrift/internal/audit"
	"github.com/samdrift/samdrift/internal/metering"
	"github.com/samdrift/samdrift/router"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/store"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

// Config configures a node.
type Config struct {
	ConfigFile    string
	DataDir       string
	HTTPAddr      string
	NATSURLs      []string
	NATSCredsFile string
	NATSNKeyFile  string
	// NATSTLSCAFile, NATSTLSCertFile, NATSTLSKeyFile: TLS to the external
	// NATS (server verification; client certificate).
	NATSTLSCAFile, NATSTLSCertFile, NATSTLSKeyFile string
	NATSSyncInterval                               time.Duration
	NATSReplicas                                   int
	TracingEndpoint                                string
	// TLS on the HTTP listener; with ClientCAFile, client certificates are
	// verified and mapped to credentials by their subject (mTLS).
	TLSCertFile  string
	TLSKeyFile   string
	ClientCAFile string
	// ExternalURL is how users reach Samdrift (links in alerts); default
	// http://<HTTPAddr>.
	ExternalURL string
	// AuditLog is the audit trail file (default <data-dir>/audit.log).
	AuditLog string
	// PushMaxBodyBytes bounds a push request body (0: the default, 32 MiB).
	PushMaxBodyBytes int64
	// ReloadInterval is how often the catalogue file is checked for changes.
	ReloadInterval time.Duration
	// Components to run: collector, router, rules, ticketing, query. Empty
	// runs every one in this process (samdrift run); a subset is a
	// scale-out process on an external NATS (samdrift collector, …).
	Components []string
	// Instance names this process among its peers (collector membership,
	// its store replica's consumers). Default: host name and components.
	Instance string
	// CollectorTTL is how long a collector that stopped heartbeating keeps
	// its targets (default 10s).
	CollectorTTL time.Duration
	// RemoteWrite exports every agency's samples to a scale-out engine;
	// RemoteRead answers queries for older data from it.
	RemoteWrite *store.RemoteConfig
	RemoteRead  *store.RemoteConfig
	// Pprof serves Go's profiles under /debug/pprof/ (no tenant data; off
	// by default).
	Pprof bool
	// MetricsAnonymous serves /metrics without credentials (for sites that
	// restrict it on the network); by default it takes ops or admin.
	MetricsAnonymous bool
	Version          string
	Logger           *slog.Logger
	// Mount adds handlers to the HTTP mux (the demo's simulated services).
	Mount map[string]http.Handler
	// Started is called once every component runs, with the HTTP address.
	Started func(addr string)
}

// Components a process can run.
var Components = []string{"collector", "router", "rules", "ticketing", "query"}

var instanceSafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// Node is one Samdrift process running every component, or a subset.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	reg     *prometheus.Registry
	holder  *catalogue.Holder
	ready   atomic.Bool
	metrics *nodeMetrics
	// incidents is the built-in incident store, set once running.
	incidents *builtin.Store

	mu      sync.Mutex
	applies []func(*catalogue.Catalogue)
}

// reapply applies the current catalogue to every component (after a
// reload, or when the collector set changed).
func (n *Node) reapply() {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.holder.Get()
	for _, f := range n.applies {
		f(c)
	}
}

// New loads and validates the catalogue; it refuses an invalid one.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:9470"
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = time.Second
	}
	if cfg.DataDir == "" {
		return nil, errors.New("a data dir is required (--data-dir)")
	}
	for _, c := range cfg.Components {
		if !slices.Contains(Components, c) {
			return nil, fmt.Errorf("unknown component %q (want %s)", c, strings.Join(Components, ", "))
		}
	}
	if len(cfg.Components) > 0 && len(cfg.NATSURLs) == 0 {
		return nil, fmt.Errorf("component %s runs beside other processes and needs the NATS they share (--nats.url)", strings.Join(cfg.Components, "+"))
	}
	if cfg.Instance == "" {
		host, _ := os.Hostname()
		cfg.Instance = host
		if len(cfg.Components) > 0 {
			cfg.Instance += "-" + strings.Join(cfg.Components, "-")
		}
	}
	cfg.Instance = instanceSafe.ReplaceAllString(cfg.Instance, "_")
	cat, err := catalogue.LoadFile(cfg.ConfigFile)
	if err != nil {
		return nil, err
	}
	if cat.Grafana.URL != "" {
		// The key Grafana's data source credentials derive from: made now
		// if missing, so that provisioning and this process agree on it.
		if _, err := cat.EnsureGrafanaKey(); err != nil {
			return nil, err
		}
	}
	n := &Node{cfg: cfg, logger: cfg.Logger, reg: prometheus.NewRegistry(), holder: catalogue.NewHolder(cat)}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = newNodeMetrics(n.reg)
	n.metrics.reloadSuccess.Set(1)
	n.metrics.reloadTime.SetToCurrentTime()
	return n, nil
}

// has reports whether this process runs component c.
func (n *Node) has(c string) bool {
	return len(n.cfg.Components) == 0 || slices.Contains(n.cfg.Components, c)
}

// split reports whether this process is one of several (scale-out).
func (n *Node) split() bool { return len(n.cfg.Components) > 0 }

// Catalogue returns the holder of the current catalogue.
func (n *Node) Catalogue() *catalogue.Holder { return n.holder }

// Run starts every component and blocks until ctx is done or SIGINT/SIGTERM.
func (n *Node) Run(ctx context.Context) error {
	logger := n.logger
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	tp, shutdownTracing, err := newTracerProvider(ctx, n.cfg.TracingEndpoint, n.cfg.Version)
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.Background()) }()

	// Listen first: a taken port should fail before anything else starts.
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.HTTPAddr, err)
	}
	defer ln.Close()

	b, err := bus.Open(ctx, bus.Options{
		URLs: n.cfg.NATSURLs, DataDir: n.cfg.DataDir, Replicas: n.cfg.NATSReplicas,
		SyncInterval: n.cfg.NATSSyncInterval, CredsFile: n.cfg.NATSCredsFile, NKeyFile: n.cfg.NATSNKeyFile,
		TLSCAFile: n.cfg.NATSTLSCAFile, TLSCertFile: n.cfg.NATSTLSCertFile, TLSKeyFile: n.cfg.NATSTLSKeyFile,
		Logger: logger.With("component", "bus"),
	})
	if err != nil {
		return err
	}
	// The bus closes last: every other component publishes or consumes on it.
	defer b.Close()

	meter, err := metering.New(ctx, metering.Options{Bus: b, Catalogue: n.holder, Logger: logger.With("component", "metering"), Registerer: n.reg})
	if err != nil {
		return err
	}
	auditPath := n.cfg.AuditLog
	if auditPath == "" {
		auditPath = filepath.Join(n.cfg.DataDir, "audit.log")
	}
	auditLog := audit.Open(auditPath)
	mux := http.NewServeMux()
	var g run.Group
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var applies []func(*catalogue.Catalogue)

	// The store: every process that answers queries or evaluates rules
	// keeps a copy of the agencies' data. Scale-out processes each consume
	// with consumers of their own; samples are then metered by the router.
	var st *store.Store
	engine := store.NewEngine(logger.With("component", "query"), n.reg)
	if n.has("query") || n.has("rules") {
		so := store.Options{
			Dir: filepath.Join(n.cfg.DataDir, "tsdb"), Bus: b, Meter: meter,
			Logger: logger.With("component", "store"), Registerer: n.reg, Tracer: tp,
			RemoteRead: n.cfg.RemoteRead,
		}
		// A batch can reach the store after later ones: router replicas
		// hand batches on in either order, and after a crash JetStream
		// redelivers the unacknowledged batch only when its ack wait ends,
		// while newer batches flow at once. A short out-of-order window
		// stores both (the fault suite loses samples without it).
		so.OutOfOrderWindow = 10 * time.Minute
		if n.split() {
			so.Instance, so.NoSampleMetering = n.cfg.Instance, true
		}
		if n.has("query") {
			so.RemoteWrite = n.cfg.RemoteWrite
		}
		st, err = store.New(so)
		if err != nil {
			return err
		}
		// The store closes after the run group: its consumers stop before
		// its TSDBs close, so nothing is appended to a closed database.
		defer st.Close()
		if err := st.Apply(n.holder.Get()); err != nil {
			return err
		}
		applies = append(applies, func(c *catalogue.Catalogue) {
			if err := st.Apply(c); err != nil {
				logger.Error("apply catalogue to store", "err", err)
			}
		})
		dctx, dcancel := context.WithCancel(ctx)
		g.Add(func() error { return n.followDrops(dctx, b, st) }, func(error) { dcancel() })
		meter.Gauge(metering.Series, func() map[string]float64 { s, _ := st.Usage(); return s })
		meter.Gauge(metering.StoredBytes, func() map[string]float64 { _, b := st.Usage(); return b })
	}

	var rt *router.Router
	if n.has("router") {
		ro := router.Options{Bus: b, Catalogue: n.holder, Logger: logger.With("component", "router"), Registerer: n.reg, Tracer: tp}
		if n.split() {
			ro.Meter = meter
		}
		rt = router.New(ro)
		rctx, rcancel := context.WithCancel(ctx)
		g.Add(func() error { return rt.Run(rctx) }, func(error) { rcancel() })
	}

	if n.has("collector") {
		meter.Gauge(metering.Targets, func() map[string]float64 { return targets(n.holder.Get()) })
		var filter func(string) bool
		settle := time.Duration(0)
		if n.split() {
			// Targets are shared among the live collectors by consistent
			// hashing; a newcomer waits until the others have seen it, so
			// that no target is scraped twice.
			scrape.UserAgent = "Samdrift/" + n.cfg.Version + " collector/" + n.cfg.Instance
			ms, err := collector.NewMembership(ctx, collector.MembershipOptions{Bus: b, Self: n.cfg.Instance, TTL: n.cfg.CollectorTTL,
				Logger: logger.With("component", "collector"), Registerer: n.reg})
			if err != nil {
				return err
			}
			filter = ms.Owns
			settle = 2 * time.Second
			mctx, mcancel := context.WithCancel(context.Background())
			g.Add(func() error { return ms.Run(mctx) }, func(error) {
				mcancel()
				lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer lcancel()
				_ = ms.Leave(lctx)
			})
			ms.OnChange(func() { n.reapply() })
		}
		scr, err := collector.NewScraper(collector.Options{
			Bus: b, Logger: logger.With("component", "collector"), Registerer: n.reg, Tracer: tp,
			Filter: func(job, address string) bool { return filter == nil || filter(job+"/"+address) },
		})
		if err != nil {
			return err
		}
		prober := collector.NewProber(collector.ProberOptions{
			Bus: b, Logger: logger.With("component", "prober"), Registerer: n.reg, Tracer: tp,
			Filter: func(key string) bool { return filter == nil || filter("probe/"+key) },
		})
		applyCollector := func(c *catalogue.Catalogue) {
			if err := scr.Apply(c); err != nil {
				logger.Error("apply catalogue to collector", "err", err)
			}
			prober.Apply(c)
		}
		if settle == 0 {
			if err := scr.Apply(n.holder.Get()); err != nil {
				return err
			}
			prober.Apply(n.holder.Get())
		} else {
			go func() {
				select {
				case <-time.After(settle):
					n.reapply()
				case <-ctx.Done():
				}
			}()
		}
		applies = append(applies, applyCollector)
		var admit func(a *catalogue.Agency, samples int) (bool, time.Duration)
		if rt != nil {
			admit = rt.Admit
		}
		push, err := collector.NewPush(collector.PushOptions{
			Bus: b, Catalogue: n.holder, Admit: admit, MaxBodyBytes: n.cfg.PushMaxBodyBytes,
			Logger: logger.With("component", "push"), Registerer: n.reg, Tracer: tp,
		})
		if err != nil {
			return err
		}
		defer push.Close()
		mux.Handle("/api/v1/push", n.holder.Authenticate(push.RemoteWrite()))
		mux.Handle("/otlp/v1/metrics", n.holder.Authenticate(push.OTLP()))
		mux.Handle("/api/v1/alerts", n.holder.Authenticate(push.Alerts()))
		g.Add(scr.Run, func(error) { scr.Stop() })
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { prober.Stop() })
	}

	var ruler *rules.Engine
	if n.has("rules") {
		ro := rules.Options{
			Stores: st, Bus: b, Engine: engine, Dir: filepath.Join(n.cfg.DataDir, "rules"), Meter: meter,
			ExternalURL: n.externalURL(ln), Logger: logger.With("component", "rules"), Registerer: n.reg, Tracer: tp,
		}
		if n.split() {
			ro.Publish = publishOutputs(b)
		}
		ruler = rules.New(ro)
		// Invalid agency rule files are logged and counted; they do not stop startup.
		_ = ruler.Apply(n.holder.Get())
		// Rules stop before the store closes: they append to it.
		defer ruler.Stop()
		applies = append(applies, func(c *catalogue.Catalogue) { _ = ruler.Apply(c) })
	}

	var incidents *builtin.Store
	if n.has("ticketing") || n.has("query") {
		if incidents, err = builtin.Open(ctx, b); err != nil {
			return err
		}
		n.incidents = incidents
		mux.Handle(builtin.APIPrefix, n.holder.Authenticate(builtin.API(incidents, auditLog)))
		mux.Handle(builtin.APIPrefix+"/", n.holder.Authenticate(builtin.API(incidents, auditLog)))
	}
	if n.has("ticketing") {
		tk, err := ticketing.New(ctx, ticketing.Options{
			Bus: b, Catalogue: n.holder, Meter: meter, Logger: logger.With("component", "ticketing"), Registerer: n.reg, Tracer: tp,
		})
		if err != nil {
			return err
		}
		deliveries, logout, err := n.deliveries(ctx, n.holder.Get(), incidents, n.externalURL(ln), logger)
		if err != nil {
			return err
		}
		defer logout()
		// Every backend's outbox consumer exists before the first alert is
		// processed, so no delivery is enqueued without a reader.
		for _, d := range deliveries {
			if _, err := tk.EnsureDelivery(ctx, d); err != nil {
				return err
			}
		}
		if err := tk.PruneDeliveries(ctx, deliveries); err != nil {
			logger.Warn("prune outbox consumers", "err", err)
		}
		tctx, tcancel := context.WithCancel(ctx)
		g.Add(func() error { return tk.Run(tctx) }, func(error) { tcancel() })
		for _, d := range deliveries {
			g.Add(func() error { return tk.RunDelivery(tctx, d) }, func(error) { tcancel() })
		}
	}

	if st != nil {
		opts := store.APIOptions{Engine: engine, Ready: n.ready.Load, Logger: logger.With("component", "query"), Version: n.cfg.Version,
			Audit: auditLog, Agencies: func() []string {
				var ids []string
				for _, a := range n.holder.Get().Agencies {
					ids = append(ids, a.ID)
				}
				return ids
			}}
		if ruler != nil {
			opts.Rules = ruler.Retriever
		}
		mux.Handle(store.APIPrefix+"/", n.holder.Authenticate(st.APIHandler(opts)))
	}
	if n.has("query") {
		mux.Handle("/api/v1/reports/sla", n.holder.Authenticate(&reports{holder: n.holder, engine: engine, queryable: st.Queryable(), incidents: incidents, audit: auditLog}))
		mux.Handle("/api/v1/admin/", n.holder.Authenticate((&admin{n: n, st: st, b: b, incidents: incidents, meter: meter, audit: auditLog}).handler()))
		mux.Handle("/", console.New(console.Options{
			Catalogue: n.holder, Engine: engine, Queryable: st.Queryable(), Incidents: incidents,
			Logger: logger.With("component", "console"), Audit: auditLog, Version: n.cfg.Version, ReportLinks: true,
		}).Handler())
		// Incidents as series, for dashboards (samdrift_incident_open).
		g.Add(func() error { writeIncidentSeries(ctx, st, incidents, logger); return nil }, func(error) { cancel() })
	}
	n.mu.Lock()
	n.applies = applies
	n.mu.Unlock()
	n.holder.Watch(func(*catalogue.Catalogue) { n.reapply() })

	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Samdrift is Healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "Samdrift is not ready.", http.StatusServiceUnavailable)
			return
		}
		if !b.NC.IsConnected() {
			http.Error(w, "Samdrift is not ready: not connected to NATS.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Samdrift is Ready.")
	})
	// /metrics names every agency (ingest, usage, rule groups): it is the
	// provider's, so it takes an ops or admin credential unless the site
	// protects it otherwise (--web.metrics-anonymous).
	providerOnly := func(h http.Handler) http.Handler {
		return n.holder.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id, _ := catalogue.FromContext(r.Context()); !id.AllAgencies() {
				_ = auditLog.Write(audit.Entry{Who: id.Credential, Action: "admin_denied", Agency: id.Agency, Detail: map[string]any{"path": r.URL.Path}})
				http.Error(w, "403 forbidden: "+r.URL.Path+" is the provider's (ops or admin credential)", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		}))
	}
	metricsHandler := promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg})
	if n.cfg.MetricsAnonymous {
		mux.Handle("/metrics", metricsHandler)
	} else {
		mux.Handle("/metrics", providerOnly(metricsHandler))
	}
	if n.cfg.Pprof {
		mux.Handle("/debug/pprof/", providerOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", providerOnly(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", providerOnly(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", providerOnly(http.HandlerFunc(pprof.Trace)))
	}
	for p, h := range n.cfg.Mount {
		mux.Handle(p, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if n.cfg.TLSCertFile != "" {
		tlsCfg, err := serverTLS(n.cfg.TLSCertFile, n.cfg.TLSKeyFile, n.cfg.ClientCAFile)
		if err != nil {
			return err
		}
		srv.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
	}

	{
		// Termination and reload signals.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		g.Add(func() error {
			defer signal.Stop(sig)
			for {
				select {
				case s := <-sig:
					if s == syscall.SIGHUP {
						n.Reload()
						continue
					}
					logger.Info("received signal, shutting down", "signal", s.String())
					return nil
				case <-ctx.Done():
					return nil
				}
			}
		}, func(error) { cancel() })
	}
	{
		// Catalogue file watcher.
		g.Add(func() error {
			n.watchFile(ctx)
			return nil
		}, func(error) { cancel() })
	}
	{
		g.Add(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		})
	}
	{
		// Usage is flushed every 30s, and once more at shutdown.
		g.Add(func() error { meter.Run(ctx, 30*time.Second); return nil }, func(error) { cancel() })
	}
	{
		// Readiness: every actor above has been started by now.
		g.Add(func() error {
			n.ready.Store(true)
			addr := ln.Addr().String()
			comps := "all"
			if n.split() {
				comps = strings.Join(n.cfg.Components, ",")
			}
			logger.Info("samdrift started", "http", addr, "agencies", len(n.holder.Get().Agencies), "embedded_nats", b.Embedded(),
				"components", comps, "instance", n.cfg.Instance)
			if n.cfg.Started != nil {
				n.cfg.Started(addr)
			}
			<-ctx.Done()
			return nil
		}, func(error) { n.ready.Store(false); cancel() })
	}
	err = g.Run()
	logger.Info("samdrift stopped")
	return err
}

// Reload re-reads the catalogue file. An invalid file is refused and the
// running catalogue stays in force.
func (n *Node) Reload() {
	cat, err := catalogue.LoadFile(n.cfg.ConfigFile)
	if err != nil {
		n.metrics.reloadSuccess.Set(0)
		n.logger.Error("catalogue reload refused; keeping the running catalogue", "err", err)
		return
	}
	n.holder.Set(cat)
	n.metrics.reloadSuccess.Set(1)
	n.metrics.reloadTime.SetToCurrentTime()
	n.logger.Info("catalogue reloaded", "file", n.cfg.ConfigFile, "agencies", len(cat.Agencies))
}

func (n *Node) watchFile(ctx context.Context) {
	stat := func() (time.Time, int64) {
		fi, err := os.Stat(n.cfg.ConfigFile)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	mt, sz := stat()
	t := time.NewTicker(n.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m, s := stat()
			if s >= 0 && (!m.Equal(mt) || s != sz) {
				mt, sz = m, s
				n.Reload()
			}
		}
	}
}

type nodeMetrics struct {
	reloadSuccess prometheus.Gauge
	reloadTime    prometheus.Gauge
}

func newNodeMetrics(reg prometheus.Registerer) *nodeMetrics {
	m := &nodeMetrics{
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "samdrift_catalogue_last_reload_successful",
			Help: "Whether the last catalogue reload attempt succeeded.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "samdrift_catalogue_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful catalogue reload.",
		}),
	}
	reg.MustRegister(m.reloadSuccess, m.reloadTime)
	return m
}

// serverTLS loads the listener's certificate and, if given, the CA that
// client certificates must chain to.
func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s holds no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		// Certificates are optional: callers without one use a bearer token.
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

func (n *Node) externalURL(ln net.Listener) string {
	if n.cfg.ExternalURL != "" {
		return strings.TrimSuffix(n.cfg.ExternalURL, "/")
	}
	scheme := "http"
	if n.cfg.TLSCertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String()
}

// writeIncidentSeries puts every agency's incidents into its TSDB every
// 15 seconds, so that dashboards can show them next to the SLA figures.
func writeIncidentSeries(ctx context.Context, st *store.Store, incidents *builtin.Store, logger *slog.Logger) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, id := range st.Agencies() {
			db := st.DB(id)
			if db == nil {
				continue
			}
			app := db.Appender(ctx)
			if err := incidents.WriteSeries(ctx, app, id, now); err != nil {
				_ = app.Rollback()
				logger.Debug("incident series", "agency", id, "err", err)
				continue
			}
			_ = app.Commit()
		}
	}
}

// targets counts each agency's scrape targets and probes.
func targets(c *catalogue.Catalogue) map[string]float64 {
	out := map[string]float64{}
	for _, a := range c.Agencies {
		n := 0
		for _, s := range a.Services {
			n += len(s.Probes)
			for _, sc := range s.Scrape {
				n += len(sc.Targets)
			}
		}
		out[a.ID] = float64(n)
	}
	return out
}
