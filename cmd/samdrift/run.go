package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"

	"github.com/samdrift/samdrift/internal/node"
	"github.com/samdrift/samdrift/store"
)

type nodeFlags struct {
	dataDir          *string
	httpAddr         *string
	natsURLs         *[]string
	natsCreds        *string
	natsNKey         *string
	natsTLSCA        *string
	natsTLSCert      *string
	natsTLSKey       *string
	natsSyncInterval *time.Duration
	natsReplicas     *int
	tracingEndpoint  *string
	tlsCert          *string
	tlsKey           *string
	clientCA         *string
	pushMaxBody      *units.Base2Bytes
	externalURL      *string
	auditLog         *string
	instance         *string
	collectorTTL     *time.Duration
	rwURL            *[]string
	rrURL            *string
	tenantHeader     *string
	remoteHeaders    *map[string]string
	rwDeadline       *time.Duration
	pprof            *bool
	metricsAnon      *bool
	readTimeout      *time.Duration
	maxConns         *int
	cpuProfile       *string
	engineURL        *string
	engineTenant     *string
	engineLabel      *string
}

func addNodeFlags(cmd *kingpin.CmdClause, defaultDataDir string) *nodeFlags {
	f := &nodeFlags{}
	dd := cmd.Flag("data-dir", "Directory for the per-agency TSDBs and the embedded NATS JetStream store.")
	if defaultDataDir != "" {
		dd.Default(defaultDataDir)
	} else {
		dd.Required()
	}
	f.dataDir = dd.String()
	f.httpAddr = cmd.Flag("http.addr", "Address of the HTTP API, console and /metrics.").Default("127.0.0.1:9470").String()
	f.natsURLs = cmd.Flag("nats.url", "External NATS server or cluster URL (repeatable). Without it an embedded server runs.").Strings()
	f.natsCreds = cmd.Flag("nats.creds", "NATS user credentials file for --nats.url.").String()
	f.natsNKey = cmd.Flag("nats.nkey", "NATS NKEY seed file for --nats.url.").String()
	f.natsTLSCA = cmd.Flag("nats.tls-ca", "CA certificate that signed the NATS servers' certificates (TLS to --nats.url).").String()
	f.natsTLSCert = cmd.Flag("nats.tls-cert", "Client certificate for NATS servers that verify clients (with --nats.tls-key).").String()
	f.natsTLSKey = cmd.Flag("nats.tls-key", "Key of --nats.tls-cert.").String()
	f.natsSyncInterval = cmd.Flag("nats.sync-interval", "How often the embedded NATS server fsyncs JetStream files (0 = after every write).").Default("1s").Duration()
	f.natsReplicas = cmd.Flag("nats.replicas", "Replication factor of streams and KV buckets (3 on a cluster).").Default("1").Int()
	f.tlsCert = cmd.Flag("http.tls-cert-file", "TLS certificate of the HTTP listener (PEM); serves HTTPS when set.").String()
	f.tlsKey = cmd.Flag("http.tls-key-file", "TLS key of the HTTP listener (PEM).").String()
	f.clientCA = cmd.Flag("http.client-ca-file", "CA (PEM) that client certificates must chain to; enables mTLS credentials (cert_subject).").String()
	f.externalURL = cmd.Flag("web.external-url", "URL under which users reach Samdrift (links in alerts and incidents). Default: http://<http.addr>.").String()
	f.pushMaxBody = cmd.Flag("push.max-body-bytes", "Largest push request body accepted, compressed or not (413 above).").Default("32MiB").Bytes()
	f.instance = cmd.Flag("instance", "Name of this process among its peers (collector membership, store replica consumers); unique per process. Default: host name and components.").String()
	f.collectorTTL = cmd.Flag("collector.ttl", "How long a collector that stopped heartbeating keeps its targets before the others take them.").Default("10s").Duration()
	f.rwURL = cmd.Flag("remote-write.url", "Export every agency's samples to this remote-write endpoint of a scale-out engine (Mimir, Thanos Receive, VictoriaMetrics); {agency} in the URL is replaced by the agency id. Repeat it for more endpoints of the same engine (the receivers of a Thanos hashring): the export moves to the next when one fails.").Strings()
	f.rrURL = cmd.Flag("store.remote-read-url", "Answer queries for data older than the local TSDB from this remote-read endpoint, per agency; {agency} is replaced.").String()
	f.tenantHeader = cmd.Flag("remote.tenant-header", `Header carrying the agency id as tenant on remote write and read ("-": none, for engines with the tenant in the URL).`).Default("X-Scope-OrgID").String()
	f.remoteHeaders = cmd.Flag("remote.header", "Extra header NAME=VALUE on remote write and read (repeatable), for example Authorization.").StringMap()
	f.engineURL = cmd.Flag("engine.url", "Read every agency's series from this scale-out engine's Prometheus API (Thanos Query, Mimir), the agency as tenant: no local replica (query, rules, run). Feed it with --remote-write.url.").String()
	f.engineLabel = cmd.Flag("engine.tenant-label", `Label the engine adds to a tenant's series (Thanos Receive: tenant_id), removed from every answer ("": none).`).Default("tenant_id").String()
	f.engineTenant = cmd.Flag("engine.tenant-header", `Header carrying the agency id as tenant on reads from --engine.url ("-": none; every read also carries the agency's matcher).`).Default("X-Scope-OrgID").String()
	f.rwDeadline = cmd.Flag("remote-write.batch-send-deadline", "Longest wait to fill a remote-write batch.").Default("5s").Duration()
	f.metricsAnon = cmd.Flag("web.metrics-anonymous", "Serve /metrics without credentials (it names every agency; by default it takes an ops or admin token).").Bool()
	f.pprof = cmd.Flag("web.enable-pprof", "Serve Go profiles under /debug/pprof/ (for benchmarks and support).").Bool()
	f.readTimeout = cmd.Flag("web.read-timeout", "Longest time to read a whole request, body included: a client that trickles its request is cut off.").Default("1m").Duration()
	f.maxConns = cmd.Flag("web.max-connections", "Most simultaneous HTTP connections.").Default("512").Int()
	f.auditLog = cmd.Flag("audit-log", "Audit trail file (JSON lines; default <data-dir>/audit.log). May be the file samdrift agency … --audit-log writes.").String()
	f.cpuProfile = cmd.Flag("debug.cpu-profile", "Write a CPU profile of the whole run to this file at exit (make bench's --profile).").Hidden().String()
	f.tracingEndpoint = cmd.Flag("tracing.endpoint", "OTLP/HTTP endpoint for traces, such as http://localhost:4318/v1/traces.").String()
	return f
}

func (f *nodeFlags) config(file string, logger *slog.Logger) node.Config {
	return node.Config{
		ConfigFile: file, DataDir: *f.dataDir, HTTPAddr: *f.httpAddr,
		NATSURLs: *f.natsURLs, NATSCredsFile: *f.natsCreds, NATSNKeyFile: *f.natsNKey,
		NATSTLSCAFile: *f.natsTLSCA, NATSTLSCertFile: *f.natsTLSCert, NATSTLSKeyFile: *f.natsTLSKey,
		NATSSyncInterval: *f.natsSyncInterval, NATSReplicas: *f.natsReplicas,
		TracingEndpoint: *f.tracingEndpoint, Version: getVersion(), Logger: logger,
		PushMaxBodyBytes: int64(*f.pushMaxBody), ExternalURL: *f.externalURL,
		TLSCertFile: *f.tlsCert, TLSKeyFile: *f.tlsKey, ClientCAFile: *f.clientCA,
		AuditLog: *f.auditLog, Instance: *f.instance, CollectorTTL: *f.collectorTTL,
		RemoteWrite: f.remote(*f.rwURL...), RemoteRead: f.remote(*f.rrURL), Pprof: *f.pprof, MetricsAnonymous: *f.metricsAnon,
		ReadTimeout: *f.readTimeout, MaxConnections: *f.maxConns, Engine: f.engine(),
	}
}

func (f *nodeFlags) engine() *store.EngineConfig {
	if *f.engineURL == "" {
		return nil
	}
	return &store.EngineConfig{URL: *f.engineURL, TenantHeader: *f.engineTenant, TenantLabel: *f.engineLabel, Headers: *f.remoteHeaders}
}

// startCPUProfile profiles the process until the returned stop is called,
// when --debug.cpu-profile names a file.
func (f *nodeFlags) startCPUProfile() (func(), error) {
	if *f.cpuProfile == "" {
		return func() {}, nil
	}
	out, err := os.Create(*f.cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); out.Close() }, nil
}

func (f *nodeFlags) remote(urls ...string) *store.RemoteConfig {
	if len(urls) == 0 || urls[0] == "" {
		return nil
	}
	return &store.RemoteConfig{URL: urls[0], Fallbacks: urls[1:], TenantHeader: *f.tenantHeader, Headers: *f.remoteHeaders, BatchSendDeadline: *f.rwDeadline}
}

// registerComponents adds samdrift collector|router|rules|ticketing|query:
// one component per process, sharing an external NATS.
func registerComponents(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	help := map[string]string{
		"collector": "Run the collector alone: scrapes and probes its share of the targets (consistent hashing over the live collectors) and receives pushes.",
		"router":    "Run a router alone: routes ingested batches to their agency; replicas share the work.",
		"rules":     "Run the rules alone: evaluates the rules and SLAs of its share of the agencies (consistent hashing over the live rules processes) on a replica of their data or on the engine (--engine.url), publishes the outputs and alerts.",
		"ticketing": "Run the incident engine alone: alerts to incidents, deliveries to Remedy and notifications; replicas share the work.",
		"query":     "Run a query replica alone: serves the query API, console, reports and admin API from a replica of the agencies' data or from the engine (--engine.url).",
	}
	for _, c := range node.Components {
		var cmd *kingpin.CmdClause
		if parent := app.GetCommand(c); parent != nil {
			// "samdrift rules" also has "rules export": running the
			// component is its default subcommand.
			cmd = parent.Command("run", help[c]).Default()
		} else {
			cmd = app.Command(c, help[c])
		}
		file := cmd.Flag("config", "Agency catalogue file.").Required().String()
		f := addNodeFlags(cmd, "")
		cmds[cmd.FullCommand()] = func(logger *slog.Logger) int {
			cfg := f.config(*file, logger)
			cfg.Components = []string{c}
			n, err := node.New(cfg)
			if err != nil {
				fmt.Fprintln(os.Stderr, "samdrift "+c+":", err)
				return 2
			}
			if err := n.Run(context.Background()); err != nil {
				logger.Error("samdrift "+c+" failed", "err", err)
				return 1
			}
			return 0
		}
	}
}

func registerRun(app *kingpin.Application, cmds map[string]func(*slog.Logger) int) {
	cmd := app.Command("run", "Run every component in one process.")
	file := cmd.Flag("config", "Agency catalogue file.").Required().String()
	f := addNodeFlags(cmd, "")
	cmds[cmd.FullCommand()] = func(logger *slog.Logger) int {
		n, err := node.New(f.config(*file, logger))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		stop, err := f.startCPUProfile()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stop()
		if err := n.Run(context.Background()); err != nil {
			logger.Error("samdrift failed", "err", err)
			return 1
		}
		return 0
	}
}
