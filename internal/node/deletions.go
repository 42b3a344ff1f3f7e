package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/store"
)

// deletionsBucket records every deletion of an agency's series, so that
// every store replica deletes its copy too (replicas that were down, or
// behind on the bus, included): key <agency>.<id>.
const deletionsBucket = "series_deletions"

// deletionRedo is how long a recorded deletion is applied again: batches
// on the bus from before it (METRICS keeps 24 hours) may still reach a
// replica that is behind.
const deletionRedo = 25 * time.Hour

// seriesDeletion is one recorded deletion.
type seriesDeletion struct {
	Agency   string    `json:"agency"`
	Selector string    `json:"selector"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	At       time.Time `json:"at"`
}

// recordDeletion records a deletion for every store replica.
func recordDeletion(ctx context.Context, b *bus.Bus, d seriesDeletion) error {
	kv, err := b.KeyValue(ctx, deletionsBucket, 1)
	if err != nil {
		return err
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, d.Agency+"."+hex.EncodeToString(id[:]), v)
	return err
}

// followDeletions applies the recorded deletions to this replica's store:
// at once, then every ten minutes while a deletion is younger than
// deletionRedo (what a replica behind on the bus appends after it is
// deleted again). Deleting what is already gone is a no-op.
func (n *Node) followDeletions(ctx context.Context, b *bus.Bus, st *store.Store) error {
	known := map[string]seriesDeletion{}
	p := parser.NewParser(parser.Options{})
	apply := func() {
		for key, d := range known {
			if time.Since(d.At) > deletionRedo {
				delete(known, key)
				continue
			}
			ms, err := p.ParseMetricSelector(d.Selector)
			if err != nil {
				delete(known, key)
				continue
			}
			if k, err := st.DeleteSeries(ctx, d.Agency, ms, d.Start.UnixMilli(), d.End.UnixMilli(), false); err != nil && !errors.Is(err, store.ErrNoLocalStore) {
				n.logger.Warn("apply a recorded series deletion", "agency", d.Agency, "selector", d.Selector, "err", err)
			} else if k > 0 {
				n.logger.Info("deleted an agency's series (recorded deletion)", "agency", d.Agency, "selector", d.Selector, "series", k)
			}
		}
	}
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		err := func() error {
			kv, err := b.KeyValue(ctx, deletionsBucket, 1)
			if err != nil {
				return err
			}
			w, err := kv.WatchAll(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = w.Stop() }()
			for {
				select {
				case <-ctx.Done():
					return nil
				case e, ok := <-w.Updates():
					if !ok {
						return errors.New("series deletions watcher closed")
					}
					if e == nil {
						apply() // the history is read: apply what is still young
						continue
					}
					var d seriesDeletion
					if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &d) == nil {
						known[e.Key()] = d
						apply()
					}
				case <-t.C:
					apply()
				}
			}
		}()
		if ctx.Err() != nil {
			return nil
		}
		n.logger.Warn("series deletions watch interrupted; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}
