package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Membership is this process's view of the live set of processes of one
// kind (collectors, routers, rules processes), kept in an in-memory KV
// bucket with one key per member refreshed every heartbeat and expiring
// after the TTL; and the consistent hash (rendezvous hashing) that gives
// each key (a target, an agency) to exactly one live member: when a member
// joins or leaves, only the keys it gains or loses move.
type Membership struct {
	kv     jetstream.KeyValue
	kind   string
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
	// Kind names the set ("collector", "router", "rules"): its bucket is
	// <kind>s, its gauge samdrift_<kind>_members.
	Kind string
	Self string // this process's unique name
	// TTL after which a collector that stopped heartbeating is gone
	// (default 10s); heartbeats go every TTL/4.
	TTL        time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewMembership joins the set of o.Kind.
func (b *Bus) NewMembership(ctx context.Context, o MembershipOptions) (*Membership, error) {
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Self == "" {
		return nil, fmt.Errorf("a %s needs a name (--instance)", o.Kind)
	}
	kv, err := b.EphemeralKeyValue(ctx, o.Kind+"s", o.TTL)
	if err != nil {
		return nil, fmt.Errorf("%s membership: %w", o.Kind, err)
	}
	m := &Membership{kv: kv, kind: o.Kind, self: o.Self, ttl: o.TTL, logger: o.Logger, members: []string{o.Self},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "samdrift_" + o.Kind + "_members", Help: "Live processes of this kind this process sees (their work is shared among them)."})}
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.gauge)
	}
	if _, err := kv.Put(ctx, o.Self, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return nil, fmt.Errorf("%s membership: %w", o.Kind, err)
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

// Owns reports whether this process owns key (a target, an agency).
func (m *Membership) Owns(key string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Owner(m.members, key) == m.self
}

// Owner is the member a key belongs to under rendezvous hashing: the one
// with the highest hash of (member, key). The hash is xxhash, whose every
// input byte reaches every output bit: FNV-1a, used before, let names
// that differ in one byte ("ru1", "ru2") rank the same way for most keys,
// so that one member could own every agency.
func Owner(members []string, key string) string {
	var best string
	var bestH uint64
	for _, mb := range members {
		h := xxhash.New()
		_, _ = h.WriteString(mb)
		_, _ = h.Write([]byte{0})
		_, _ = h.WriteString(key)
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
		m.logger.Info("member set changed", "kind", m.kind, "members", keys)
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
				m.logger.Warn("membership heartbeat", "kind", m.kind, "err", err)
			}
		case <-poll.C:
			if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
				m.logger.Warn("membership", "kind", m.kind, "err", err)
			}
		}
	}
}

// Leave removes this process from the set at once (its keys move to the
// others without waiting for the TTL). Call after it stopped working.
func (m *Membership) Leave(ctx context.Context) error {
	return m.kv.Delete(ctx, m.self)
}
