package tenancy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SessionCookie names the console's session cookie. It holds a random
// session id, never a credential.
const SessionCookie = "samdrift_session"

// SessionTTL is how long a console session lasts.
const SessionTTL = 12 * time.Hour

// SessionStore keeps sessions by key: a JetStream key-value bucket (shared
// by every query process) or, in tests, memory.
type SessionStore interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

// Sessions are the console's server-side sessions: a random id in the
// cookie, the identity behind it on the server, an expiry, revoked at
// logout. The store holds only a hash of each id.
type Sessions struct {
	store SessionStore
	ttl   time.Duration
	now   func() time.Time
}

// NewSessions returns sessions kept in store, each lasting ttl (default
// SessionTTL).
func NewSessions(store SessionStore, ttl time.Duration) *Sessions {
	if ttl == 0 {
		ttl = SessionTTL
	}
	return &Sessions{store: store, ttl: ttl, now: time.Now}
}

// TTL is how long a session lasts.
func (s *Sessions) TTL() time.Duration { return s.ttl }

type session struct {
	Identity Identity  `json:"identity"`
	Expires  time.Time `json:"expires"`
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "s_" + hex.EncodeToString(sum[:])
}

// Create starts a session for id and returns its id.
func (s *Sessions) Create(ctx context.Context, id Identity) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	sid := base64.RawURLEncoding.EncodeToString(b)
	v, err := json.Marshal(session{Identity: id, Expires: s.now().Add(s.ttl)})
	if err != nil {
		return "", err
	}
	return sid, s.store.Put(ctx, sessionKey(sid), v)
}

// Lookup returns the identity of a live session.
func (s *Sessions) Lookup(ctx context.Context, sid string) (Identity, bool) {
	if len(sid) != 43 {
		return Identity{}, false
	}
	v, err := s.store.Get(ctx, sessionKey(sid))
	if err != nil {
		return Identity{}, false
	}
	var se session
	if json.Unmarshal(v, &se) != nil || !s.now().Before(se.Expires) {
		return Identity{}, false
	}
	return se.Identity, true
}

// Revoke ends a session.
func (s *Sessions) Revoke(ctx context.Context, sid string) error {
	if len(sid) != 43 {
		return nil
	}
	return s.store.Delete(ctx, sessionKey(sid))
}

// KVSessionStore keeps sessions in a JetStream key-value bucket (created
// with a TTL, so that abandoned sessions vanish).
type KVSessionStore struct{ KV jetstream.KeyValue }

// Get implements SessionStore.
func (k KVSessionStore) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := k.KV.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// Put implements SessionStore.
func (k KVSessionStore) Put(ctx context.Context, key string, v []byte) error {
	_, err := k.KV.Put(ctx, key, v)
	return err
}

// Delete implements SessionStore.
func (k KVSessionStore) Delete(ctx context.Context, key string) error {
	err := k.KV.Delete(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// MemorySessionStore keeps sessions in memory (one process, tests).
type MemorySessionStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Get implements SessionStore.
func (m *MemorySessionStore) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[key]
	if !ok {
		return nil, errors.New("no such session")
	}
	return v, nil
}

// Put implements SessionStore.
func (m *MemorySessionStore) Put(_ context.Context, key string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[key] = v
	return nil
}

// Delete implements SessionStore.
func (m *MemorySessionStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
	return nil
}
