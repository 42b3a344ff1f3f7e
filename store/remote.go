package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/util/annotations"
)

// RemoteConfig points at a Prometheus-compatible scale-out engine (Mimir,
// Thanos Receive, VictoriaMetrics cluster, Cortex, Prometheus).
type RemoteConfig struct {
	// URL of the remote-write or remote-read endpoint; "{agency}" is
	// replaced by the agency id (VictoriaMetrics puts tenants in the path).
	URL string
	// Fallbacks are more endpoints of the same engine (the receivers of one
	// Thanos hashring, say): the export moves to the next when one fails.
	// The embedded store's remote write uses URL only.
	Fallbacks []string
	// TenantHeader carries the agency id as tenant (Mimir, Cortex, Thanos
	// Receive: X-Scope-OrgID, Samdrift's default); "-" sends none.
	TenantHeader string
	// Headers are sent with every request (for example Authorization).
	Headers map[string]string
	// Timeout of one request (default 30s).
	Timeout time.Duration
	// BatchSendDeadline is how long remote write waits to fill a batch
	// (default Prometheus's 5s).
	BatchSendDeadline time.Duration
}

// DefaultTenantHeader is the tenant header of Mimir, Cortex and Thanos.
const DefaultTenantHeader = "X-Scope-OrgID"

func (c *RemoteConfig) clientFor(agency string) (*url.URL, map[string]string, model.Duration, error) {
	u, err := url.Parse(strings.ReplaceAll(c.URL, "{agency}", url.PathEscape(agency)))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, 0, fmt.Errorf("remote URL %q: want an absolute http(s) URL", c.URL)
	}
	h := map[string]string{}
	for k, v := range c.Headers {
		h[k] = v
	}
	switch c.TenantHeader {
	case "-":
	case "":
		h[DefaultTenantHeader] = agency
	default:
		h[c.TenantHeader] = agency
	}
	timeout := model.Duration(30 * time.Second)
	if c.Timeout > 0 {
		timeout = model.Duration(c.Timeout)
	}
	return u, h, timeout, nil
}

// remoteAgency is an agency's remote write queue.
type remoteAgency struct {
	ws *remote.WriteStorage
}

func (r *remoteAgency) close() { _ = r.ws.Close() }

// attachRemote starts the agency's remote-write export (a queue manager
// tailing its WAL, as Prometheus's own remote_write) and wraps its
// queryable with remote read for data older than the local TSDB.
func (s *Store) attachRemote(adb *agencyDB, dir string) error {
	if rc := s.opts.RemoteWrite; rc != nil {
		u, headers, timeout, err := rc.clientFor(adb.id)
		if err != nil {
			return err
		}
		rw := config.DefaultRemoteWriteConfig
		rw.Name = "samdrift-" + adb.id
		rw.URL = &config_util.URL{URL: u}
		rw.Headers = headers
		rw.RemoteTimeout = timeout
		rw.MetadataConfig.Send = false
		if rc.BatchSendDeadline > 0 {
			rw.QueueConfig.BatchSendDeadline = model.Duration(rc.BatchSendDeadline)
		}
		var reg prometheus.Registerer
		if s.opts.Registerer != nil {
			reg = prometheus.WrapRegistererWith(prometheus.Labels{"agency": adb.id}, s.opts.Registerer)
		}
		ws := remote.NewWriteStorage(s.logger.With("agency", adb.id, "remote_write", u.Redacted()), reg, dir, time.Minute, nil, false)
		if err := ws.ApplyConfig(&config.Config{GlobalConfig: config.DefaultGlobalConfig, RemoteWriteConfigs: []*config.RemoteWriteConfig{&rw}}); err != nil {
			_ = ws.Close()
			return fmt.Errorf("remote write: %w", err)
		}
		adb.db.SetWriteNotified(ws)
		adb.remote = &remoteAgency{ws: ws}
	}
	if rc := s.opts.RemoteRead; rc != nil {
		u, headers, timeout, err := rc.clientFor(adb.id)
		if err != nil {
			return err
		}
		cl, err := remote.NewReadClient("samdrift-"+adb.id, &remote.ClientConfig{
			URL: &config_util.URL{URL: u}, Timeout: timeout, HTTPClientConfig: config_util.DefaultHTTPClientConfig,
			Headers: headers, ChunkedReadLimit: config.DefaultChunkedReadLimit,
		})
		if err != nil {
			return fmt.Errorf("remote read: %w", err)
		}
		// Recent data comes from the local TSDB (read_recent false).
		rq := remote.NewSampleAndChunkQueryableClient(cl, labels.EmptyLabels(), nil, false, adb.db.StartTime)
		// Every remote select also carries agency="<id>": isolation holds
		// even against an engine that ignores the tenant header.
		adb.q = mergedQueryable{local: adb.db, remote: rq, agency: labels.MustNewMatcher(labels.MatchEqual, "agency", adb.id)}
	}
	return nil
}

// mergedQueryable reads the local TSDB and, as a secondary whose failure
// is a warning, the remote engine.
type mergedQueryable struct {
	local, remote storage.SampleAndChunkQueryable
	agency        *labels.Matcher
}

func (m mergedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	lq, err := m.local.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	rq, err := m.remote.Querier(mint, maxt)
	if err != nil {
		return lq, nil
	}
	return storage.NewMergeQuerier([]storage.Querier{lq}, []storage.Querier{agencyQuerier{rq, m.agency}}, storage.ChainedSeriesMerge), nil
}

func (m mergedQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	lq, err := m.local.ChunkQuerier(mint, maxt)
	if err != nil {
		return nil, err
	}
	rq, err := m.remote.ChunkQuerier(mint, maxt)
	if err != nil {
		return lq, nil
	}
	return storage.NewMergeChunkQuerier([]storage.ChunkQuerier{lq}, []storage.ChunkQuerier{agencyChunkQuerier{rq, m.agency}}, storage.NewCompactingChunkSeriesMerger(storage.ChainedSeriesMerge)), nil
}

// agencyQuerier adds the agency matcher to every remote request.
type agencyQuerier struct {
	storage.Querier
	m *labels.Matcher
}

func (q agencyQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.Querier.Select(ctx, sortSeries, hints, append(ms[:len(ms):len(ms)], q.m)...)
}

func (q agencyQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelValues(ctx, name, hints, append(ms[:len(ms):len(ms)], q.m)...)
}

func (q agencyQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelNames(ctx, hints, append(ms[:len(ms):len(ms)], q.m)...)
}

type agencyChunkQuerier struct {
	storage.ChunkQuerier
	m *labels.Matcher
}

func (q agencyChunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return q.ChunkQuerier.Select(ctx, sortSeries, hints, append(ms[:len(ms):len(ms)], q.m)...)
}

func (q agencyChunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.ChunkQuerier.LabelValues(ctx, name, hints, append(ms[:len(ms):len(ms)], q.m)...)
}

func (q agencyChunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.ChunkQuerier.LabelNames(ctx, hints, append(ms[:len(ms):len(ms)], q.m)...)
}
