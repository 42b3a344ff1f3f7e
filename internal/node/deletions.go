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
	apply := func(key string, d seriesDeletion) {
		if time.Since(d.At) > deletionRedo {
			delete(known, key)
			return
		}
		ms, err := p.ParseMetricSelector(d.Selector)
		if err != nil {
			delete(known, key)
			return
		}
		if k, err := st.DeleteSeries(ctx, d.Agency, ms, d.Start.UnixMilli(), d.End.UnixMilli(), false); err != nil && !errors.Is(err, store.ErrNoLocalStore) {
			n.logger.Warn("apply a recorded series deletion", "agency", d.Agency, "selector", d.Selector, "err", err)
		} else if k > 0 {
			n.logger.Info("deleted an agency's series (recorded deletion)", "agency", d.Agency, "selector", d.Selector, "series", k)
		}
	}
	applyAll := func() {
		for key, d := range known {
			apply(key, d)
		}
	}
	return n.followBucket(ctx, b, deletionsBucket, 10*time.Minute, func(e jetstream.KeyValueEntry) {
		var d seriesDeletion
		if e != nil && e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &d) == nil {
			known[e.Key()] = d
			apply(e.Key(), d) // each new deletion once; the whole set on every tick
		}
	}, applyAll)
}
