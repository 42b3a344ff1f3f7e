package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/tenancy"
)

// Options configure the store.
type Options struct {
	// Dir holds one TSDB per agency, in Dir/<agency>.
	Dir string
	// Bus to consume agency metrics from; nil stores only what is appended directly.
	Bus        *bus.Bus
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	// OutOfOrderWindow accepts samples this much older than the newest of their series.
	OutOfOrderWindow time.Duration
	// Meter counts ingested samples and API queries per agency (optional).
	Meter Meter
	// NoSampleMetering leaves counting samples to the router: set where
	// several store replicas (query, rules processes) each hold a copy.
	NoSampleMetering bool
	// Instance names this store's consumers ("store-<instance>-<agency>")
	// where several processes each keep a copy of the data; empty for the
	// single-process "store-<agency>". Instance consumers unused for
	// InstanceConsumerTTL are removed by the server.
	Instance string
	// RemoteWrite, if set, exports every agency's samples to a scale-out
	// engine with Prometheus's queue manager, reading the agency's WAL.
	RemoteWrite *RemoteConfig
	// RemoteRead, if set, answers queries for data older than the local
	// TSDB from the engine, as Prometheus's remote_read with read_recent
	// false.
	RemoteRead *RemoteConfig
	// Engine, if set, is where every agency's series are read, and nothing
	// is consumed from the bus (engine mode). With EngineOutputs a local
	// TSDB per agency keeps what this process writes itself (the rules'
	// outputs, which their next evaluation reads at once) and reads merge
	// it with the engine; without, no TSDB is opened.
	Engine        *EngineConfig
	EngineOutputs bool
}

// InstanceConsumerTTL is how long an instance's consumers outlive it.
const InstanceConsumerTTL = 24 * time.Hour

// consumerName is the durable consumer of an agency's metrics.
func (s *Store) consumerName(agency string) string {
	if s.opts.Instance == "" {
		return "store-" + agency
	}
	return "store-" + s.opts.Instance + "-" + agency
}

// Meter counts usage per agency.
type Meter interface {
	Add(agency, kind string, n float64)
}

// Usage kinds the store counts (see internal/metering).
const (
	usageSamples = "samples_ingested"
	usageQueries = "api_queries"
)

// Store is the set of per-agency TSDBs.
type Store struct {
	opts    Options
	logger  *slog.Logger
	tracer  trace.Tracer
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc

	mu  sync.RWMutex
	dbs map[string]*agencyDB
	// engine holds, in engine mode, the catalogue's agencies' queryables.
	engine map[string]engineQueryable
	// usage is the last count of the engine's series per agency (engineUsage).
	usageMu sync.Mutex
	usage   map[string]float64
	usageAt time.Time

	through throughSet
}

type agencyDB struct {
	id string
	db *tsdb.DB
	// retention is the agency's retention the TSDB applies (changed by
	// a catalogue reload without reopening it).
	retention time.Duration
	// q answers queries: the TSDB, or the TSDB fanned out with the remote
	// engine for older data.
	q      storage.SampleAndChunkQueryable
	remote *remoteAgency
	stop   context.CancelFunc
	done   chan struct{}
	// refs is the series cache of every append path.
	refs refCache
	// appendMu keeps the TSDB open while an append in the request runs;
	// degraded sends pushes through the consumer alone after such an
	// append failed, until the consumer has caught up.
	appendMu sync.RWMutex
	degraded atomic.Bool
	closed   bool
}

// New returns a store; call Apply to open the catalogue's agencies.
func New(o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create store dir: %w", err)
	}
	s := &Store{
		opts:   o,
		logger: o.Logger,
		tracer: o.Tracer.Tracer("github.com/samdrift/samdrift/store"),
		dbs:    map[string]*agencyDB{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(o.Registerer, s)
	return s, nil
}

// Apply opens a TSDB (and starts its consumer) for every agency of the
// catalogue, and closes those of agencies no longer in it. Data of removed
// agencies stays on disk.
func (s *Store) Apply(c *catalogue.Catalogue) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Engine != nil {
		s.engine = map[string]engineQueryable{}
		for _, a := range c.Agencies {
			s.engine[a.ID] = newEngineQueryable(s.opts.Engine, a.ID)
		}
		if !s.opts.EngineOutputs {
			return nil
		}
	}
	want := map[string]*catalogue.Agency{}
	for _, a := range c.Agencies {
		want[a.ID] = a
	}
	var errs []error
	for id, adb := range s.dbs {
		if want[id] == nil {
			s.closeDB(adb)
			delete(s.dbs, id)
			s.logger.Info("closed agency store", "agency", id)
		}
	}
	for id, a := range want {
		if adb := s.dbs[id]; adb != nil {
			if r := time.Duration(a.Retention); r != adb.retention {
				// The TSDB deletes the blocks past the new retention at its
				// next reload (within a minute).
				if err := adb.db.ApplyConfig(&promconfig.Config{StorageConfig: promconfig.StorageConfig{TSDBConfig: &promconfig.TSDBConfig{
					OutOfOrderTimeWindow: s.opts.OutOfOrderWindow.Milliseconds(),
					Retention:            &promconfig.TSDBRetentionConfig{Time: model.Duration(r)},
				}}}); err != nil {
					errs = append(errs, fmt.Errorf("agency %q: retention: %w", id, err))
				} else {
					s.logger.Info("agency retention changed", "agency", id, "from", adb.retention, "to", r)
					adb.retention = r
				}
			}
			continue
		}
		adb, err := s.openDB(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.dbs[id] = adb
	}
	return errors.Join(errs...)
}

func (s *Store) openDB(a *catalogue.Agency) (*agencyDB, error) {
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = int64(time.Duration(a.Retention) / time.Millisecond)
	// Hundreds of agencies each hold a head: the default 16384 stripes cost
	// megabytes per agency before the first series arrives.
	opts.StripeSize = 1024
	opts.WALCompression = compression.Snappy
	// As in Mimir's ingesters: no isolation. A query may see part of a
	// transaction being committed (one store batch, not one sender's
	// request), and each series saves its isolation ring (about 60 bytes,
	// docs/benchmarks.md) and every append the bookkeeping.
	opts.IsolationDisabled = true
	opts.OutOfOrderTimeWindow = s.opts.OutOfOrderWindow.Milliseconds()
	dir := filepath.Join(s.opts.Dir, a.ID)
	db, err := tsdb.Open(dir, slog.New(quietHandler{s.logger.Handler(), slog.LevelWarn}).With("agency", a.ID), nil, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open store of agency %q: %w", a.ID, err)
	}
	adb := &agencyDB{id: a.ID, db: db, q: db, done: make(chan struct{}), retention: time.Duration(a.Retention)}
	if err := s.attachRemote(adb, dir); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("agency %q: %w", a.ID, err)
	}
	if s.opts.Bus == nil || s.opts.Engine != nil {
		close(adb.done)
		return adb, nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	adb.stop = cancel
	c := newConsumer(s, adb)
	if _, err := s.opts.Bus.EnsureConsumer(ctx, c.spec()); err != nil {
		cancel()
		_ = db.Close()
		return nil, fmt.Errorf("consume metrics of agency %q: %w", a.ID, err)
	}
	go func() {
		defer close(adb.done)
		c.run(ctx)
	}()
	s.logger.Info("opened agency store", "agency", a.ID, "dir", dir)
	return adb, nil
}

// closeDB stops the agency's consumer, then closes its TSDB: the consumer
// must not append to a closed database.
func (s *Store) closeDB(adb *agencyDB) {
	if adb.closed {
		return
	}
	adb.appendMu.Lock()
	adb.closed = true
	adb.appendMu.Unlock()
	if adb.stop != nil {
		adb.stop()
	}
	<-adb.done
	if adb.remote != nil {
		adb.remote.close()
	}
	if err := adb.db.Close(); err != nil {
		s.logger.Error("close agency store", "agency", adb.id, "err", err)
	}
}

// Close stops every consumer and closes every TSDB.
func (s *Store) Close() error {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, adb := range s.dbs {
		s.closeDB(adb)
		delete(s.dbs, id)
	}
	return nil
}

// DB returns the TSDB of an agency, or nil.
func (s *Store) DB(agency string) *tsdb.DB {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if adb := s.dbs[agency]; adb != nil {
		return adb.db
	}
	return nil
}

// AgencyQueryable answers queries for one agency (its TSDB, and the remote
// engine for older data when remote read is set), or nil.
func (s *Store) AgencyQueryable(agency string) storage.SampleAndChunkQueryable {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.opts.Engine != nil {
		e, ok := s.engine[agency]
		if !ok {
			return nil
		}
		if adb := s.dbs[agency]; adb != nil {
			return outputsQueryable{engine: e, local: adb.db}
		}
		return e
	}
	if adb := s.dbs[agency]; adb != nil {
		return adb.q
	}
	return nil
}

// Usage returns each agency's active series and stored bytes (blocks, WAL
// and chunks on disk), for metering.
func (s *Store) Usage() (series, bytes map[string]float64) {
	if s.opts.Engine != nil {
		return s.engineUsage(), map[string]float64{}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	series, bytes = map[string]float64{}, map[string]float64{}
	for id, adb := range s.dbs {
		series[id] = float64(adb.db.Head().NumSeries())
		bytes[id] = float64(dirSize(filepath.Join(s.opts.Dir, id)))
	}
	return series, bytes
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Drop closes an agency's TSDB and deletes its data (offboarding). The
// agency must no longer receive data: its consumer is stopped first.
func (s *Store) Drop(agency string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if adb := s.dbs[agency]; adb != nil {
		s.closeDB(adb)
		delete(s.dbs, agency)
	}
	if s.opts.Bus != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.opts.Bus.DeleteConsumer(ctx, bus.StreamMetrics, s.consumerName(agency))
	}
	return os.RemoveAll(filepath.Join(s.opts.Dir, agency))
}

// Agencies returns the ids of the open agency stores, sorted.
func (s *Store) Agencies() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.dbs)+len(s.engine))
	for id := range s.dbs {
		ids = append(ids, id)
	}
	for id := range s.engine {
		if s.dbs[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// quietHandler passes on only records at or above min: the TSDB logs every
// WAL replay step at info, once per agency.
type quietHandler struct {
	slog.Handler
	min slog.Level
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as), h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.min}
}

// ErrNoLocalStore means the agency's series are not kept by this process (engine
// mode, or an agency it does not store).
var ErrNoLocalStore = errors.New("this process keeps no store of the agency")

// DeleteSeries deletes the series of one agency that match ms in
// [mint, maxt] (or, with dryRun, only counts them): the deletion is
// recorded as tombstones and the data removed from disk at once. Only the
// agency's own TSDB is touched, whatever the matchers say: another agency
// cannot be named. It returns the number of series matched.
func (s *Store) DeleteSeries(ctx context.Context, agency string, ms []*labels.Matcher, mint, maxt int64, dryRun bool) (int, error) {
	s.mu.RLock()
	adb := s.dbs[agency]
	s.mu.RUnlock()
	if adb == nil || s.opts.Engine != nil {
		return 0, ErrNoLocalStore
	}
	for _, m := range ms {
		if m.Name == tenancy.Label && !m.Matches(agency) {
			return 0, fmt.Errorf("the selector names another agency (%s)", m)
		}
	}
	q, err := adb.db.Querier(mint, maxt)
	if err != nil {
		return 0, err
	}
	ss := q.Select(ctx, false, &storage.SelectHints{Start: mint, End: maxt, Func: "series"}, ms...)
	n := 0
	for ss.Next() {
		n++
	}
	err = ss.Err()
	_ = q.Close()
	if err != nil || dryRun || n == 0 {
		return n, err
	}
	adb.appendMu.RLock()
	defer adb.appendMu.RUnlock()
	if err := adb.db.Delete(ctx, mint, maxt, ms...); err != nil {
		return n, err
	}
	return n, adb.db.CleanTombstones()
}
