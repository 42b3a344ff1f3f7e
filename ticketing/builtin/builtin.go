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

// Store is the built-in incident store.
type Store struct {
	kv   jetstream.KeyValue
	down atomic.Bool
	now  func() time.Time
}

// Open opens (creating if needed) the store's bucket.
func Open(ctx context.Context, b *bus.Bus) (*Store, error) {
	kv, err := b.KeyValue(ctx, bus.BucketIncidents, 1)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, now: time.Now}, nil
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
}

// List returns the incidents matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	var filters []string
	if f.Agencies != nil {
		if len(f.Agencies) == 0 {
			return nil, nil
		}
		for _, a := range f.Agencies {
			filters = append(filters, a+".*")
		}
	} else {
		filters = []string{">"}
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filters...)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []Record
	for k := range lister.Keys() {
		ent, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var rec Record
		if json.Unmarshal(ent.Value(), &rec) != nil {
			continue
		}
		if (f.State != "" && rec.State != f.State) || (f.Service != "" && rec.Service != f.Service) ||
			(!f.Since.IsZero() && rec.LastSeen.Before(f.Since)) {
			continue
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OpenedAt.After(out[j].OpenedAt) })
	return out, nil
}

// ErrNotFound: no incident with that id (visible to the caller).
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
	for k := range lister.Keys() {
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
	return nil, 0, ErrNotFound
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
		n++
	}
	return n, nil
}
