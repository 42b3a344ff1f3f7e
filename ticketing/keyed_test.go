package ticketing

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type heldMsg struct {
	jetstream.Msg // only InProgress is used
	name          string
	progress      atomic.Int32
}

func (m *heldMsg) InProgress() error { m.progress.Add(1); return nil }

// TestKeyedOrderAndProgress: with one worker busy, items of other keys wait
// reporting progress (JetStream would hand them out again otherwise);
// keys take turns in the order they became ready, each key's items in
// order.
func TestKeyedOrderAndProgress(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	k := newKeyed(1, func(m jetstream.Msg) {
		hm := m.(*heldMsg)
		if hm.name == "a1" {
			<-release
		}
		mu.Lock()
		order = append(order, hm.name)
		mu.Unlock()
	})
	k.heartbeat = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.run(ctx); close(done) }()
	msgs := map[string]*heldMsg{}
	for _, it := range []struct{ key, name string }{{"a", "a1"}, {"b", "b1"}, {"a", "a2"}, {"c", "c1"}, {"b", "b2"}} {
		m := &heldMsg{name: it.name}
		msgs[it.name] = m
		k.add(it.key, m)
	}
	require.Eventually(t, func() bool { return msgs["c1"].progress.Load() >= 3 && msgs["a2"].progress.Load() >= 3 },
		5*time.Second, 5*time.Millisecond, "waiting items report progress")
	close(release)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(c, []string{"a1", "b1", "c1", "a2", "b2"}, order)
	}, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
}
