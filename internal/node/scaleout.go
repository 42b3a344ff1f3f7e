package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/prompb"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/rules"
	"github.com/samdrift/samdrift/store"
)

// dropsBucket records every agency data deletion (offboarding), so that
// each store replica deletes its copy too, including replicas that were
// down at the time: key = agency, one revision per deletion.
const dropsBucket = "agency_drops"

// publishOutputs hands the rules' outputs to the other store replicas.
func publishOutputs(b *bus.Bus) rules.PublishFunc {
	return func(ctx context.Context, agency string, wr *prompb.WriteRequest) error {
		data, err := bus.EncodeMetrics(wr)
		if err != nil {
			return err
		}
		_, err = b.Publish(ctx, &nats.Msg{Subject: bus.AgencySubject(agency, bus.KindMetrics), Data: data}, "")
		return err
	}
}

// recordDrop records a deletion of an agency's data for the other replicas.
func recordDrop(ctx context.Context, b *bus.Bus, agency string) error {
	kv, err := b.KeyValue(ctx, dropsBucket, 1)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, agency, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	return err
}

// followBucket follows a KV bucket until ctx ends: onEntry for each value
// (its history first, then each change; nil once the history is read) and
// onTick every tick. A NATS outage closes the watcher; the store keeps
// running and the watch resumes when the bus is back.
func (n *Node) followBucket(ctx context.Context, b *bus.Bus, bucket string, tick time.Duration, onEntry func(jetstream.KeyValueEntry), onTick func()) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	watch := func() error {
		kv, err := b.KeyValue(ctx, bucket, 1)
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
					return errors.New("watcher closed")
				}
				onEntry(e)
			case <-t.C:
				onTick()
			}
		}
	}
	for {
		err := watch()
		if ctx.Err() != nil {
			return nil
		}
		n.logger.Warn("bucket watch interrupted; retrying", "bucket", bucket, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// followDrops deletes this replica's copy of an agency's data when a
// deletion is recorded, once this process's catalogue also has the
// agency's intake stopped. A marker file remembers the deletions done.
func (n *Node) followDrops(ctx context.Context, b *bus.Bus, st *store.Store) error {
	pending := map[string]uint64{}
	marker := func(agency string) string {
		return filepath.Join(n.cfg.DataDir, "tsdb", ".dropped-"+agency)
	}
	try := func() {
		for agency, rev := range pending {
			if b, err := os.ReadFile(marker(agency)); err == nil && strings.TrimSpace(string(b)) == strconv.FormatUint(rev, 10) {
				delete(pending, agency)
				continue
			}
			if a := n.holder.Get().Agency(agency); a != nil && a.Phase.AcceptsData() {
				continue // this process has not seen the intake stop yet
			}
			if err := st.Drop(agency); err != nil {
				n.logger.Error("delete agency data", "agency", agency, "err", err)
				continue
			}
			_ = os.WriteFile(marker(agency), []byte(strconv.FormatUint(rev, 10)), 0o600)
			n.logger.Info("deleted agency data (offboarded)", "agency", agency)
			delete(pending, agency)
		}
	}
	return n.followBucket(ctx, b, dropsBucket, 2*time.Second, func(e jetstream.KeyValueEntry) {
		if e != nil && e.Operation() == jetstream.KeyValuePut {
			pending[e.Key()] = e.Revision()
			try()
		}
	}, func() {
		if len(pending) > 0 {
			try()
		}
	})
}
