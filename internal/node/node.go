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
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/store"
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
	// Engine, if set, is where this process reads every agency's series
	// (Thanos Query, Mimir): it keeps no replica of the agencies' data. The
	// engine is fed by the routers' export (RemoteWrite).
	Engine *store.EngineConfig
	// Pprof serves Go's profiles under /debug/pprof/ (no tenant data; off
	// by default).
	Pprof bool
	// MetricsAnonymous serves /metrics without credentials (for sites that
	// restrict it on the network); by default it takes ops or admin.
	MetricsAnonymous bool
	Version          string
	Logger           *slog.Logger
	// SeedIncidents, if set, is called once the built-in incident store is
	// open (the demo's past incidents).
	SeedIncidents func(ctx context.Context, incidents *builtin.Store) error
	// Mount adds handlers to the HTTP mux (the demo's simulated services).
	Mount map[string]http.Handler
	// MaxConnections bounds the HTTP listener's open connections (default
	// 512, as Prometheus's --web.max-connections).
	MaxConnections int
	// ReadTimeout bounds reading a whole request (default 1m).
	ReadTimeout time.Duration
	// Started is called once every component runs, with the HTTP address.
	Started func(addr string)
}

// Components a process can run.
var Components = []string{"collector", "router", "rules", "ticketing", "query"}

var instanceSafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// Node is one Samdrift process running every component, or a subset.
type Node struct {
	cfg       Config
	logger    *slog.Logger
	reg       *prometheus.Registry
	holder    *catalogue.Holder
	prober    *prober
	reloaders *reloaders
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
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 512
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = time.Minute
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Node{
		cfg: cfg, logger: cfg.Logger, reg: reg, holder: catalogue.NewHolder(cat),
		prober: newProber(), reloaders: newReloaders(cfg.Logger, reg),
	}, nil
}

// has reports whether this process runs component c.
func (n *Node) has(c string) bool {
	return len(n.cfg.Components) == 0 || slices.Contains(n.cfg.Components, c)
}

// split reports whether this process is one of several (scale-out).
func (n *Node) split() bool { return len(n.cfg.Components) > 0 }

// Run sets every component up, in dependency order, then runs them as
// oklog/run actors until ctx ends or SIGINT/SIGTERM, and stops them in the
// order lifecycle.go describes.
func (n *Node) Run(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	as := &actors{logger: n.logger}
	// Whatever setup opened before a failure it closes again; after a
	// successful setup the actors own it.
	p, err := n.setup(ctx, as)
	if err != nil {
		return err
	}
	// Signals: the group ends on SIGTERM/SIGINT; SIGHUP reloads.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	as.add(actor{stage: stageSignals, name: "signals", run: func(rctx context.Context) error {
		defer signal.Stop(sig)
		for {
			select {
			case s := <-sig:
				if s == syscall.SIGHUP {
					n.Reload()
					continue
				}
				n.logger.Info("received signal, shutting down", "signal", s.String())
				return nil
			case <-ctx.Done():
				return nil
			case <-rctx.Done():
				return nil
			}
		}
	}})
	g := as.group()
	comps := "all"
	if n.split() {
		comps = strings.Join(n.cfg.Components, ",")
	}
	n.logger.Info("samdrift started", "http", p.addr, "agencies", len(n.holder.Get().Agencies), "embedded_nats", p.bus.Embedded(),
		"components", comps, "instance", n.cfg.Instance)
	if n.cfg.Started != nil {
		n.cfg.Started(p.addr)
	}
	err = g.Run()
	// Every actor has stopped, in order; only the tracer is left.
	if p.shutdownTracing != nil {
		_ = p.shutdownTracing(context.Background())
	}
	n.logger.Info("samdrift stopped")
	return err
}

// Reload re-reads the catalogue file and hands it to every reloader. An
// invalid file is refused and the running catalogue stays in force.
func (n *Node) Reload() {
	cat, err := catalogue.LoadFile(n.cfg.ConfigFile)
	if err != nil {
		n.reloaders.fail(err)
		n.logger.Error("catalogue reload refused; keeping the running catalogue", "err", err)
		return
	}
	n.holder.Set(cat)
	n.reloaders.apply(cat)
	n.logger.Info("catalogue reloaded", "file", n.cfg.ConfigFile, "agencies", len(cat.Agencies))
}

// watchFile reloads the catalogue when its file changes.
func (n *Node) watchFile(ctx context.Context) error {
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
			return nil
		case <-t.C:
			m, s := stat()
			if s >= 0 && (!m.Equal(mt) || s != sz) {
				mt, sz = m, s
				n.Reload()
			}
		}
	}
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
