package rules

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/samdrift/samdrift/catalogue"
)

// ErrRestatementConflict means the restatement overlaps one in force for the
// same service (withdraw that one first), or was already withdrawn.
var ErrRestatementConflict = errors.New("restatement conflict")

// ErrNoRestatement means no restatement has that id.
var ErrNoRestatement = errors.New("no such restatement")

// RestatementStore keeps restatements in a JetStream key-value bucket,
// one key per restatement (<agency>.<id>), every version kept: the
// restatement as made, then as withdrawn.
type RestatementStore struct {
	kv jetstream.KeyValue
}

// NewRestatementStore stores restatements in kv.
func NewRestatementStore(kv jetstream.KeyValue) *RestatementStore { return &RestatementStore{kv: kv} }

// Add records a new restatement made by whom, after checking it against
// the catalogue and the restatements in force.
func (s *RestatementStore) Add(ctx context.Context, c *catalogue.Catalogue, r Restatement, by string, now time.Time) (Restatement, error) {
	if err := r.Validate(c, now); err != nil {
		return r, err
	}
	existing, err := s.List(ctx, r.Agency)
	if err != nil {
		return r, err
	}
	for _, o := range existing {
		if o.Active() && o.Overlaps(r) {
			return r, fmt.Errorf("%w: overlaps restatement %s (%s – %s); withdraw it first", ErrRestatementConflict, o.ID, o.From.Format(time.RFC3339), o.To.Format(time.RFC3339))
		}
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	r.ID, r.By, r.At, r.Effect = hex.EncodeToString(id[:]), by, now.UTC(), nil
	r.WithdrawnBy, r.WithdrawnAt, r.WithdrawnReason = "", time.Time{}, ""
	b, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	if _, err := s.kv.Create(ctx, key(r.Agency, r.ID), b); err != nil {
		return r, err
	}
	r.Version = 1
	return r, nil
}

// Withdraw withdraws a restatement in force; the record stays.
func (s *RestatementStore) Withdraw(ctx context.Context, agency, id, by, reason string, now time.Time) (Restatement, error) {
	e, err := s.kv.Get(ctx, key(agency, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Restatement{}, fmt.Errorf("%w: %s of %s", ErrNoRestatement, id, agency)
	}
	if err != nil {
		return Restatement{}, err
	}
	var r Restatement
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, err
	}
	if !r.Active() {
		return r, fmt.Errorf("%w: %s was withdrawn at %s", ErrRestatementConflict, id, r.WithdrawnAt.Format(time.RFC3339))
	}
	if reason == "" {
		return r, errors.New("withdrawing needs a reason")
	}
	r.WithdrawnBy, r.WithdrawnAt, r.WithdrawnReason = by, now.UTC(), reason
	b, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	if _, err := s.kv.Update(ctx, key(agency, id), b, e.Revision()); err != nil {
		return r, err
	}
	r.Version = 2
	return r, nil
}

// List returns an agency's restatements (withdrawn ones too), oldest
// window first.
func (s *RestatementStore) List(ctx context.Context, agency string) ([]Restatement, error) {
	all, err := s.list(ctx, agency+".*")
	return all[agency], err
}

// ListAll returns every agency's restatements, by agency (one read of the
// bucket, for pages that show many agencies).
func (s *RestatementStore) ListAll(ctx context.Context) (map[string][]Restatement, error) {
	return s.list(ctx, ">")
}

func (s *RestatementStore) list(ctx context.Context, filter string) (map[string][]Restatement, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return map[string][]Restatement{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]Restatement{}
	for k := range lister.Keys() {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r Restatement
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, err
		}
		r.Version = 1
		if !r.Active() {
			r.Version = 2
		}
		if key(r.Agency, r.ID) == k {
			out[r.Agency] = append(out[r.Agency], r)
		}
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].From.Before(rs[j].From) })
	}
	return out, nil
}

func key(agency, id string) string { return agency + "." + id }
