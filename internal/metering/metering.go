// Package metering counts each agency's use of Samdrift per calendar month,
// for cost sharing: samples ingested, peak active series and stored bytes,
// probe and scrape targets, rule evaluations, alerts, incidents and API
// queries. Counts are split by the agency's phase at the time (plan and
// build are financed by the onboarding project, run by cost sharing), kept
// in a JetStream key-value bucket (nothing lost on restart) and exported on
// /metrics.
package metering

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
)

// Bucket is the key-value bucket of usage records.
const Bucket = "usage"

// Counters and gauges of a month.
const (
	Samples     = "samples_ingested"
	RuleEvals   = "rule_evaluations"
	Alerts      = "alerts"
	Incidents   = "incidents"
	Queries     = "api_queries"
	Series      = "active_series_peak"
	StoredBytes = "stored_bytes_peak"
	Targets     = "targets_peak"
)

// Counters are summed; Gauges keep the month's peak.
var (
	Counters = []string{Samples, RuleEvals, Alerts, Incidents, Queries}
	Gauges   = []string{Series, StoredBytes, Targets}
)

// Record is one agency's usage in one month and phase.
type Record struct {
	Agency string             `json:"agency"`
	Month  string             `json:"month"`
	Phase  string             `json:"phase"`
	Values map[string]float64 `json:"values"`
}

// Gauge is sampled at each flush (active series, stored bytes, targets).
type Gauge func() map[string]float64 // agency -> value

// Meter accumulates usage and flushes it to the bucket.
type Meter struct {
	kv     jetstream.KeyValue
	cat    *catalogue.Holder
	logger *slog.Logger
	now    func() time.Time
	gauges map[string]Gauge

	mu      sync.Mutex
	pending map[key]map[string]float64
	peaks   map[key]map[string]float64
	total   *prometheus.CounterVec
}

type key struct{ agency, month, phase string }

func (k key) String() string { return k.agency + "." + k.month + "." + k.phase }

// Options configure a meter.
type Options struct {
	Bus        *bus.Bus
	Catalogue  *catalogue.Holder
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// New opens the usage bucket.
func New(ctx context.Context, o Options) (*Meter, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Meter{cat: o.Catalogue, logger: o.Logger, now: o.Now, gauges: map[string]Gauge{},
		pending: map[key]map[string]float64{}, peaks: map[key]map[string]float64{}}
	if o.Bus != nil {
		kv, err := o.Bus.KeyValue(ctx, Bucket, 1)
		if err != nil {
			return nil, err
		}
		m.kv = kv
	}
	m.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "samdrift_usage_total",
		Help: "Usage counted for cost sharing, by agency and kind (samples_ingested, rule_evaluations, alerts, incidents, api_queries).",
	}, []string{"agency", "kind"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.total)
	}
	return m, nil
}

// Gauge registers a sampled gauge under name (Series, StoredBytes, Targets).
func (m *Meter) Gauge(name string, g Gauge) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gauges[name] = g
}

func (m *Meter) keyFor(agency string, t time.Time) key {
	phase := "unknown"
	loc := time.UTC
	if c := m.cat.Get(); c != nil {
		loc = c.Location()
		if a := c.Agency(agency); a != nil {
			phase = string(a.Phase)
			loc = a.Location()
		}
	}
	return key{agency, t.In(loc).Format("2006-01"), phase}
}

// Add counts n of kind for an agency, now. Safe on a nil meter.
func (m *Meter) Add(agency, kind string, n float64) {
	if m == nil || n == 0 || agency == "" {
		return
	}
	k := m.keyFor(agency, m.now())
	m.mu.Lock()
	if m.pending[k] == nil {
		m.pending[k] = map[string]float64{}
	}
	m.pending[k][kind] += n
	m.mu.Unlock()
	m.total.WithLabelValues(agency, kind).Add(n)
}

// Run flushes every interval until ctx ends, and once more then.
func (m *Meter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := m.Flush(fctx); err != nil {
				m.logger.Warn("flush usage at shutdown", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := m.Flush(ctx); err != nil {
				m.logger.Warn("flush usage", "err", err)
			}
		}
	}
}

// Flush samples the gauges and adds the pending counts to the bucket, with
// compare-and-set (several processes may meter the same agency).
func (m *Meter) Flush(ctx context.Context) error {
	now := m.now()
	m.mu.Lock()
	for name, g := range m.gauges {
		for agency, v := range g() {
			k := m.keyFor(agency, now)
			if m.peaks[k] == nil {
				m.peaks[k] = map[string]float64{}
			}
			m.peaks[k][name] = max(m.peaks[k][name], v)
		}
	}
	pending, peaks := m.pending, m.peaks
	m.pending, m.peaks = map[key]map[string]float64{}, map[key]map[string]float64{}
	m.mu.Unlock()
	if m.kv == nil {
		return nil
	}
	keys := map[key]bool{}
	for k := range pending {
		keys[k] = true
	}
	for k := range peaks {
		keys[k] = true
	}
	var errs []error
	for k := range keys {
		if err := m.merge(ctx, k, pending[k], peaks[k]); err != nil {
			errs = append(errs, err)
			// Keep what could not be written for the next flush.
			m.mu.Lock()
			for kind, v := range pending[k] {
				if m.pending[k] == nil {
					m.pending[k] = map[string]float64{}
				}
				m.pending[k][kind] += v
			}
			m.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (m *Meter) merge(ctx context.Context, k key, add, peaks map[string]float64) error {
	for range 20 {
		rec := Record{Agency: k.agency, Month: k.month, Phase: k.phase, Values: map[string]float64{}}
		var rev uint64
		ent, err := m.kv.Get(ctx, k.String())
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(ent.Value(), &rec); err != nil {
				return fmt.Errorf("usage record %s: %w", k, err)
			}
			rev = ent.Revision()
		}
		for kind, v := range add {
			rec.Values[kind] += v
		}
		for kind, v := range peaks {
			rec.Values[kind] = max(rec.Values[kind], v)
		}
		b, _ := json.Marshal(rec)
		if rev == 0 {
			_, err = m.kv.Create(ctx, k.String(), b)
		} else {
			_, err = m.kv.Update(ctx, k.String(), b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return err
	}
	return fmt.Errorf("usage record %s: too many concurrent updates", k)
}

// Month returns every agency's records of a month ("2026-10").
func (m *Meter) Month(ctx context.Context, month string) ([]Record, error) {
	if _, err := time.Parse("2006-01", month); err != nil {
		return nil, fmt.Errorf("month %q: want YYYY-MM", month)
	}
	if err := m.Flush(ctx); err != nil {
		m.logger.Warn("flush usage before reading", "err", err)
	}
	lister, err := m.kv.ListKeysFiltered(ctx, "*."+month+".*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []Record
	for k := range lister.Keys() {
		ent, err := m.kv.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(ent.Value(), &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Agency != out[j].Agency {
			return out[i].Agency < out[j].Agency
		}
		return out[i].Phase < out[j].Phase
	})
	return out, nil
}

// Funded says who pays for usage in a phase.
func Funded(phase string) string {
	if phase == string(catalogue.PhaseRun) {
		return "cost sharing"
	}
	return "onboarding project"
}

// ShareDrivers are the measures cost shares are computed from.
var ShareDrivers = []string{Samples, Series, StoredBytes}

// Shares computes each run-phase record's share of the month's cost: the
// mean, over the share drivers, of its part of the run-phase total. Plan
// and build records get no share (the onboarding project pays).
func Shares(recs []Record) []float64 {
	totals := map[string]float64{}
	for _, r := range recs {
		if r.Phase != string(catalogue.PhaseRun) {
			continue
		}
		for _, d := range ShareDrivers {
			totals[d] += r.Values[d]
		}
	}
	out := make([]float64, len(recs))
	for i, r := range recs {
		if r.Phase != string(catalogue.PhaseRun) {
			continue
		}
		sum, n := 0.0, 0
		for _, d := range ShareDrivers {
			if totals[d] > 0 {
				sum += r.Values[d] / totals[d]
				n++
			}
		}
		if n > 0 {
			out[i] = sum / float64(n)
		}
	}
	return out
}

// CSV renders the month's usage as CSV.
func CSV(recs []Record) string {
	var b strings.Builder
	cols := append(append([]string{}, Counters...), Gauges...)
	b.WriteString("month,agency,phase,funded_by," + strings.Join(cols, ",") + ",share\n")
	shares := Shares(recs)
	for i, r := range recs {
		fmt.Fprintf(&b, "%s,%s,%s,%s", r.Month, r.Agency, r.Phase, Funded(r.Phase))
		for _, c := range cols {
			fmt.Fprintf(&b, ",%.0f", r.Values[c])
		}
		fmt.Fprintf(&b, ",%.4f\n", shares[i])
	}
	return b.String()
}
