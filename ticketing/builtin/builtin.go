// Package builtin is Samdrift's own incident store: the default ticket
// backend, kept in a JetStream key-value bucket, and the record behind
// /api/v1/incidents whatever other backend is configured.
package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/ticketing"
)

// Record is a stored incident with what people did with it.
type Record struct {
	ticketing.Incident
	Acknowledged bool                     `json:"acknowledged"`
	AckedBy      string                   `json:"acked_by,omitempty"`
	AckedAt      time.Time                `json:"acked_at,omitzero"`
	Assignee     string                   `json:"assignee,omitempty"`
	Notes        []ticketing.WorkLogEntry `json:"notes,omitempty"`
	UpdatedAt    time.Time                `json:"updated_at"`
}

// Store is the built-in incident store. Listing goes through an index in
// memory (a few hundred bytes per incident), kept by watching the bucket,
// so that a page of the newest incidents reads only that page.
type Store struct {
	kv   jetstream.KeyValue
	down atomic.Bool
	now  func() time.Time

	mu      sync.RWMutex
	index   map[string]entry // bucket key -> what listing filters and sorts by
	watcher jetstream.KeyWatcher
}

// entry is an incident as the index holds it.
type entry struct {
	agency, id, service, state string
	openedAt, lastSeen         time.Time
}

// Open opens (creating if needed) the store's bucket and indexes it.
func Open(ctx context.Context, b *bus.Bus) (*Store, error) {
	kv, err := b.KeyValue(ctx, bus.BucketIncidents, 1)
	if err != nil {
		return nil, err
	}
	s := &Store{kv: kv, now: time.Now, index: map[string]entry{}}
	// The index holds every current incident before Open returns; Run
	// keeps it current with what other processes write.
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("index incidents: %w", err)
	}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		s.indexUpdate(e)
	}
	s.watcher = w
	return s, nil
}

// Run keeps the listing index current with what every process writes,
// until ctx ends; the watch starts over when it breaks (a NATS outage).
func (s *Store) Run(ctx context.Context) error {
	w := s.watcher
	for {
		if w != nil {
			func() {
				defer func() { _ = w.Stop() }()
				for {
					select {
					case <-ctx.Done():
						return
					case e, ok := <-w.Updates():
						if !ok {
							return
						}
						if e != nil {
							s.indexUpdate(e)
						}
					}
				}
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		var err error
		if w, err = s.kv.WatchAll(ctx); err != nil {
			w = nil
		}
	}
}

func (s *Store) indexUpdate(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.index, e.Key())
		return
	}
	var rec Record
	if json.Unmarshal(e.Value(), &rec) == nil {
		s.index[e.Key()] = entryOf(&rec)
	}
}

func entryOf(rec *Record) entry {
	return entry{agency: rec.Agency, id: rec.ID, service: rec.Service, state: rec.State, openedAt: rec.OpenedAt, lastSeen: rec.LastSeen}
}

// SetAvailable makes the store refuse deliveries (temporarily) while
// false: a fault switch for outage drills and tests.
func (s *Store) SetAvailable(ok bool) { s.down.Store(!ok) }

func key(agency, id string) string { return agency + "." + id }

// Deliver stores the incident's version, keeping what people added. An
// older or equal version than the stored one changes nothing.
func (s *Store) Deliver(ctx context.Context, inc *ticketing.Incident) (string, error) {
	if s.down.Load() {
		return "", ticketing.Temporary(errors.New("built-in incident store unavailable"), 0)
	}
	k := key(inc.Agency, inc.ID)
	for range 20 {
		var rec Record
		var rev uint64
		ent, err := s.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return "", ticketing.Temporary(err, 0)
		default:
			if err := json.Unmarshal(ent.Value(), &rec); err != nil {
				return "", fmt.Errorf("decode stored incident %s: %w", inc.ID, err)
			}
			rev = ent.Revision()
			if rec.Version >= inc.Version {
				return inc.ID, nil
			}
		}
		prevTicket := rec.Ticket
		rec.Incident = *inc
		rec.UpdatedAt = s.now()
		if rec.Ticket == "" {
			rec.Ticket = prevTicket // another backend's number, recorded meanwhile
		}
		if rec.Ticket == "" {
			rec.Ticket = inc.ID
		}
		if err := s.put(ctx, k, &rec, rev); err != nil {
			if isConflict(err) {
				continue
			}
			return "", ticketing.Temporary(err, 0)
		}
		return inc.ID, nil
	}
	return "", ticketing.Temporary(fmt.Errorf("incident %s: too many concurrent updates", inc.ID), 0)
}

func (s *Store) put(ctx context.Context, k string, rec *Record, rev uint64) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, k, b)
	} else {
		_, err = s.kv.Update(ctx, k, b, rev)
	}
	if err == nil {
		// This process reads its own writes at once; the watcher confirms.
		s.mu.Lock()
		s.index[k] = entryOf(rec)
		s.mu.Unlock()
	}
	return err
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// Filter selects incidents.
type Filter struct {
	// Agencies the caller may see; nil means every agency.
	Agencies []string
	State    string
	Service  string
	Since    time.Time
	// Limit bounds a page (0: no bound); After continues after a cursor.
	Limit int
	After *Cursor
}

// Cursor is where a page ends: incidents are ordered newest first, by when
// they opened, then by id.
type Cursor struct {
	OpenedAt time.Time
	ID       string
}

func (e entry) before(c Cursor) bool {
	// Newest first: e comes after the cursor when it opened earlier, or at
	// the same time with a smaller id.
	return e.openedAt.Before(c.OpenedAt) || (e.openedAt.Equal(c.OpenedAt) && e.id < c.ID)
}

// List returns every incident matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	f.Limit, f.After = 0, nil
	recs, _, err := s.Page(ctx, f)
	return recs, err
}

// Page returns a page of the incidents matching f, newest first, and the
// cursor of the next page (nil on the last).
func (s *Store) Page(ctx context.Context, f Filter) ([]Record, *Cursor, error) {
	if f.Agencies != nil && len(f.Agencies) == 0 {
		return nil, nil, nil
	}
	allowed := map[string]bool{}
	for _, a := range f.Agencies {
		allowed[a] = true
	}
	s.mu.RLock()
	var keys []string
	var es []entry
	for k, e := range s.index {
		if (f.Agencies != nil && !allowed[e.agency]) || (f.State != "" && e.state != f.State) ||
			(f.Service != "" && e.service != f.Service) || (!f.Since.IsZero() && e.lastSeen.Before(f.Since)) ||
			(f.After != nil && !e.before(*f.After)) {
			continue
		}
		keys = append(keys, k)
		es = append(es, e)
	}
	s.mu.RUnlock()
	order := make([]int, len(es))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := es[order[i]], es[order[j]]
		if !a.openedAt.Equal(b.openedAt) {
			return a.openedAt.After(b.openedAt)
		}
		return a.id > b.id
	})
	var next *Cursor
	if f.Limit > 0 && len(order) > f.Limit {
		order = order[:f.Limit]
		last := es[order[len(order)-1]]
		next = &Cursor{OpenedAt: last.openedAt, ID: last.id}
	}
	out := make([]Record, 0, len(order))
	for _, i := range order {
		ent, err := s.kv.Get(ctx, keys[i])
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, nil, err
		}
		var rec Record
		if err := json.Unmarshal(ent.Value(), &rec); err != nil {
			return nil, nil, fmt.Errorf("incident %s: %w", keys[i], err)
		}
		// A list shows incidents, not each of their alerts: GET by id does.
		rec.Alerts = nil
		out = append(out, rec)
	}
	return out, next, nil
}

// ErrNotFound says there is no incident with that id (visible to the caller).
var ErrNotFound = errors.New("incident not found")

// Get returns one incident by id.
func (s *Store) Get(ctx context.Context, id string) (*Record, uint64, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, "*."+id)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, 0, ErrNotFound
		}
		return nil, 0, err
	}
	k, ok := <-lister.Keys()
	if !ok {
		return nil, 0, ErrNotFound
	}
	ent, err := s.kv.Get(ctx, k)
	if err != nil {
		return nil, 0, err
	}
	var rec Record
	if err := json.Unmarshal(ent.Value(), &rec); err != nil {
		return nil, 0, err
	}
	return &rec, ent.Revision(), nil
}

// Update changes an incident with compare-and-set.
func (s *Store) Update(ctx context.Context, id string, f func(*Record) error) (*Record, error) {
	for range 20 {
		rec, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := f(rec); err != nil {
			return nil, err
		}
		rec.UpdatedAt = s.now()
		if err := s.put(ctx, key(rec.Agency, rec.ID), rec, rev); err != nil {
			if isConflict(err) {
				continue
			}
			return nil, err
		}
		return rec, nil
	}
	return nil, fmt.Errorf("incident %s: too many concurrent updates", id)
}

// SetTicket records the primary backend's ticket reference (a Remedy
// incident number) on the stored incident.
func (s *Store) SetTicket(ctx context.Context, agency, id, ticket string) error {
	_, err := s.Update(ctx, id, func(r *Record) error {
		if r.Agency != agency {
			return ErrNotFound
		}
		r.Ticket = ticket
		return nil
	})
	return err
}

// RecordFailure notes that a ticket backend refused the incident.
func (s *Store) RecordFailure(ctx context.Context, inc *ticketing.Incident) error {
	_, err := s.Update(ctx, inc.ID, func(r *Record) error {
		r.DeliveryError = inc.DeliveryError
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil // not stored yet: its own delivery carries the state
	}
	return err
}

// DeleteAgency deletes every incident of an agency (offboarding) and
// returns how many there were.
func (s *Store) DeleteAgency(ctx context.Context, agency string) (int, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, agency+".*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for k := range lister.Keys() {
		if err := s.kv.Purge(ctx, k); err != nil {
			return n, err
		}
		s.mu.Lock()
		delete(s.index, k)
		s.mu.Unlock()
		n++
	}
	return n, nil
}
