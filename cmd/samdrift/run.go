package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"

	"github.com/samdrift/samdrift/internal/node"
)

type nodeFlags struct {
	dataDir          *string
	httpAddr         *string
	natsURLs         *[]string
	natsCreds        *string
	natsNKey         *string
	natsSyncInterval *time.Duration
	natsReplicas     *int
	tracingEndpoint  *string
	tlsCert          *string
	tlsKey           *string
	clientCA         *string
	pushMaxBody      *units.Base2Bytes
	externalURL      *string
	auditLog         *string
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
	f.natsSyncInterval = cmd.Flag("nats.sync-interval", "How often the embedded NATS server fsyncs JetStream files (0 = after every write).").Default("1s").Duration()
	f.natsReplicas = cmd.Flag("nats.replicas", "Replication factor of streams and KV buckets (3 on a cluster).").Default("1").Int()
	f.tlsCert = cmd.Flag("http.tls-cert-file", "TLS certificate of the HTTP listener (PEM); serves HTTPS when set.").String()
	f.tlsKey = cmd.Flag("http.tls-key-file", "TLS key of the HTTP listener (PEM).").String()
	f.clientCA = cmd.Flag("http.client-ca-file", "CA (PEM) that client certificates must chain to; enables mTLS credentials (cert_subject).").String()
	f.externalURL = cmd.Flag("web.external-url", "URL under which users reach Samdrift (links in alerts and incidents). Default: http://<http.addr>.").String()
	f.pushMaxBody = cmd.Flag("push.max-body-bytes", "Largest push request body accepted, compressed or not (413 above).").Default("32MiB").Bytes()
	f.auditLog = cmd.Flag("audit-log", "Audit trail file (JSON lines; default <data-dir>/audit.log). May be the file samdrift agency … --audit-log writes.").String()
	f.tracingEndpoint = cmd.Flag("tracing.endpoint", "OTLP/HTTP endpoint for traces, such as http://localhost:4318/v1/traces.").String()
	return f
}

func (f *nodeFlags) config(file string, logger *slog.Logger) node.Config {
	return node.Config{
		ConfigFile: file, DataDir: *f.dataDir, HTTPAddr: *f.httpAddr,
		NATSURLs: *f.natsURLs, NATSCredsFile: *f.natsCreds, NATSNKeyFile: *f.natsNKey,
		NATSSyncInterval: *f.natsSyncInterval, NATSReplicas: *f.natsReplicas,
		TracingEndpoint: *f.tracingEndpoint, Version: getVersion(), Logger: logger,
		PushMaxBodyBytes: int64(*f.pushMaxBody), ExternalURL: *f.externalURL,
		TLSCertFile: *f.tlsCert, TLSKeyFile: *f.tlsKey, ClientCAFile: *f.clientCA,
		AuditLog: *f.auditLog,
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
		if err := n.Run(context.Background()); err != nil {
			logger.Error("samdrift failed", "err", err)
			return 1
		}
		return 0
	}
}
