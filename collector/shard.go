package collector

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/samdrift/samdrift/bus"
)

// MembersBucket is the KV bucket of live collectors: one key per collector,
// refreshed every heartbeat, expiring after the TTL.
const MembersBucket = "collectors"

// Membership is this collector's view of the live collector set, and the
// consistent hash (rendezvous hashing) that gives each target to exactly
// one live collector: when a collector joins or leaves, only the targets it
// gains or loses move.
type Membership struct {
	kv     jetstream.KeyValue
	self   string
	ttl    time.Duration
	logger *slog.Logger

	mu       sync.RWMutex
	members  []string
	onChange []func()
	gauge    prometheus.Gauge
}

// MembershipOptions configure a membership.
type MembershipOptions struct {
	Bus  *bus.Bus
	Self string // this collector's unique name
	// TTL after which a collector that stopped heartbeating is gone
	// (default 10s); heartbeats go every TTL/4.
	TTL        time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewMembership joins the collector set.
func NewMembership(ctx context.Context, o MembershipOptions) (*Membership, error) {
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Self == "" {
		return nil, errors.New("a collector needs a name (--instance)")
	}
	kv, err := o.Bus.EphemeralKeyValue(ctx, MembersBucket, o.TTL)
	if err != nil {
		return nil, fmt.Errorf("collector membership: %w", err)
	}
	m := &Membership{kv: kv, self: o.Self, ttl: o.TTL, logger: o.Logger, members: []string{o.Self},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "samdrift_collector_members", Help: "Live collectors this collector sees (targets are shared among them)."})}
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.gauge)
	}
	if _, err := kv.Put(ctx, o.Self, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return nil, fmt.Errorf("collector membership: %w", err)
	}
	if err := m.refresh(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// OnChange registers f to run when the live set changes.
func (m *Membership) OnChange(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onChange = append(m.onChange, f)
}

// Members returns the live collectors, sorted.
func (m *Membership) Members() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.members)
}

// Owns reports whether this collector owns key (a target).
func (m *Membership) Owns(key string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Owner(m.members, key) == m.self
}

// Owner is the member a key belongs to under rendezvous hashing: the one
// with the highest hash of (member, key).
func Owner(members []string, key string) string {
	var best string
	var bestH uint64
	for _, mb := range members {
		h := fnv.New64a()
		_, _ = h.Write([]byte(mb))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		if v := h.Sum64(); best == "" || v > bestH {
			best, bestH = mb, v
		}
	}
	return best
}

// refresh reads the live set and reports a change.
func (m *Membership) refresh(ctx context.Context) error {
	keys, err := m.kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return err
	}
	if !slices.Contains(keys, m.self) {
		keys = append(keys, m.self) // our own heartbeat may be in flight
	}
	sort.Strings(keys)
	m.mu.Lock()
	changed := !slices.Equal(keys, m.members)
	m.members = keys
	fs := slices.Clone(m.onChange)
	m.mu.Unlock()
	m.gauge.Set(float64(len(keys)))
	if changed {
		m.logger.Info("collector set changed", "members", keys)
		for _, f := range fs {
			f()
		}
	}
	return nil
}

// Run heartbeats and follows the live set until ctx ends, then leaves.
func (m *Membership) Run(ctx context.Context) error {
	beat := time.NewTicker(m.ttl / 4)
	defer beat.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if _, err := m.kv.Put(ctx, m.self, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && ctx.Err() == nil {
				m.logger.Warn("collector heartbeat", "err", err)
			}
		case <-poll.C:
			if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
				m.logger.Warn("collector membership", "err", err)
			}
		}
	}
}

// Leave removes this collector from the set at once (its targets move to
// the others without waiting for the TTL). Call after it stopped scraping.
func (m *Membership) Leave(ctx context.Context) error {
	return m.kv.Delete(ctx, m.self)
}
