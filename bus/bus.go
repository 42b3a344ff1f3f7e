package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the connection to NATS.
type Options struct {
	// URLs of an external NATS server or cluster. Empty starts an embedded
	// server storing JetStream data under DataDir.
	URLs []string
	// DataDir holds the embedded server's JetStream store.
	DataDir string
	// Replicas is the replication factor of streams and KV buckets (1 for
	// the embedded server, 3 on a cluster).
	Replicas int
	// SyncInterval is how often the embedded server fsyncs JetStream files;
	// 0 fsyncs after every write. See docs/configuration.md.
	SyncInterval time.Duration
	// CredsFile, NKeyFile: NATS user credentials for an external server.
	CredsFile string
	NKeyFile  string
	// TLSCAFile verifies the external server's certificate (a private CA);
	// TLSCertFile and TLSKeyFile are this client's certificate for servers
	// that require one (verify: true). A tls:// URL, or any of these,
	// makes the connection TLS-only.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// Name identifies this connection in NATS monitoring.
	Name       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Bus is a live connection to NATS JetStream. It is the only way other
// packages reach NATS: streams, subjects, consumers and key-value buckets are
// declared and used through its methods.
type Bus struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	server *server.Server
	opts   Options
	// deadLetters counts messages moved to the dead letters.
	deadLetters *prometheus.CounterVec
}

// Open starts the embedded server if no URL is given, connects and makes sure
// every stream exists.
func Open(ctx context.Context, o Options) (*Bus, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Name == "" {
		o.Name = "samdrift"
	}
	b := &Bus{opts: o, deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "samdrift_dead_letters_total",
		Help: "Messages a stage could not process, moved to the agency's dead letters (GET /api/v1/admin/deadletters lists them).",
	}, []string{"stage", "agency"})}
	if o.Registerer != nil {
		o.Registerer.MustRegister(b.deadLetters)
	}
	copts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				o.Logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { o.Logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	var url string
	if len(o.URLs) == 0 {
		s, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		b.server = s
		copts = append(copts, nats.InProcessServer(s))
	} else {
		for i, u := range o.URLs {
			if i > 0 {
				url += ","
			}
			url += u
		}
		if o.CredsFile != "" {
			copts = append(copts, nats.UserCredentials(o.CredsFile))
		}
		if o.NKeyFile != "" {
			opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
			if err != nil {
				return nil, fmt.Errorf("nats nkey: %w", err)
			}
			copts = append(copts, opt)
		}
		if o.TLSCAFile != "" {
			copts = append(copts, nats.RootCAs(o.TLSCAFile))
		}
		if o.TLSCertFile != "" || o.TLSKeyFile != "" {
			if o.TLSCertFile == "" || o.TLSKeyFile == "" {
				return nil, fmt.Errorf("nats TLS: a client certificate needs both --nats.tls-cert and --nats.tls-key")
			}
			copts = append(copts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
		}
		if o.TLSCAFile != "" || o.TLSCertFile != "" {
			copts = append(copts, nats.Secure())
		}
		copts = append(copts, nats.RetryOnFailedConnect(true))
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	b.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	if err := b.ensureStreams(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func startEmbedded(o Options) (*server.Server, error) {
	sopts := &server.Options{
		ServerName:         "samdrift-embedded",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           filepath.Join(o.DataDir, "nats"),
		MaxPayload:         8 << 20,
		SyncInterval:       o.SyncInterval,
		SyncAlways:         o.SyncInterval == 0,
		NoSigs:             true,
		JetStreamMaxMemory: 256 << 20,
	}
	if o.SyncInterval < 0 {
		sopts.SyncInterval, sopts.SyncAlways = 0, false // NATS default (2m)
	}
	s, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats did not become ready within 30s")
	}
	return s, nil
}

// StreamConfigs are the streams Samdrift uses.
func (b *Bus) StreamConfigs() []jetstream.StreamConfig {
	r := b.opts.Replicas
	return []jetstream.StreamConfig{
		{
			// Work queue: a batch leaves INGEST once a router has republished it.
			Name: StreamIngest, Subjects: []string{"ingest.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: r, Duplicates: 2 * time.Minute, MaxAge: 7 * 24 * time.Hour,
		},
		{
			Name: StreamMetrics, Subjects: []string{"agency.*.metrics"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: r, Duplicates: 2 * time.Minute, MaxAge: 24 * time.Hour,
		},
		{
			Name: StreamAlerts, Subjects: []string{"agency.*.alerts"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: r, Duplicates: 2 * time.Minute, MaxAge: 7 * 24 * time.Hour,
		},
		{
			// Ticket deliveries, one durable consumer per backend: a message
			// is removed once every backend has taken it.
			Name: StreamOutbox, Subjects: []string{"outbox.>"},
			Retention: jetstream.InterestPolicy, Storage: jetstream.FileStorage,
			Replicas: r, Duplicates: 10 * time.Minute, MaxAge: 30 * 24 * time.Hour,
		},
		{
			// Messages no stage could process, per agency and stage, with
			// the reason: listed for ops, replayed or discarded by an admin.
			Name: StreamDeadLetter, Subjects: []string{"deadletter.>"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: r, MaxAge: DeadLetterMaxAge, MaxMsgsPerSubject: DeadLetterMaxPerSubject,
			Discard: jetstream.DiscardOld,
		},
	}
}

func (b *Bus) ensureStreams(ctx context.Context) error {
	for _, cfg := range b.StreamConfigs() {
		if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// KeyValue opens (creating if needed) a KV bucket with the bus's
// replication factor and file storage.
func (b *Bus) KeyValue(ctx context.Context, bucket string, history uint8) (jetstream.KeyValue, error) {
	return b.keyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, History: history, Storage: jetstream.FileStorage, Replicas: b.opts.Replicas,
	})
}

// EphemeralKeyValue opens (creating if needed) an in-memory KV bucket whose
// keys expire after ttl unless written again: membership heartbeats.
func (b *Bus) EphemeralKeyValue(ctx context.Context, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	return b.keyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, TTL: ttl, History: 1, Storage: jetstream.MemoryStorage, Replicas: b.opts.Replicas,
	})
}

func (b *Bus) keyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Replicas is the configured replication factor.
func (b *Bus) Replicas() int { return b.opts.Replicas }

// Embedded reports whether this bus runs its own in-process server.
func (b *Bus) Embedded() bool { return b.server != nil }

// Connected reports whether the connection to NATS is up.
func (b *Bus) Connected() bool { return b.nc != nil && b.nc.IsConnected() }

// MaxPayload is the largest message the server accepts, in bytes.
func (b *Bus) MaxPayload() int { return int(b.nc.MaxPayload()) }

// Close drains the connection and stops the embedded server, if any.
func (b *Bus) Close() {
	if b.nc != nil {
		_ = b.nc.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !b.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.nc.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
}
