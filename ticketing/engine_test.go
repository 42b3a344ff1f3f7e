package ticketing_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/ticketing"
	"github.com/samdrift/samdrift/ticketing/builtin"
)

func setup(t *testing.T) (*bus.Bus, *catalogue.Holder) {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	cat, err := catalogue.Parse([]byte(`provider: {name: P}
agencies:
  - {id: alpha, name: Alpha, phase: run, services: [{id: web, name: W, tier: high}]}
  - {id: beta, name: Beta, phase: run, services: [{id: web, name: W, tier: low}]}
`), "c.yaml")
	require.NoError(t, err)
	return b, catalogue.NewHolder(cat)
}

func firing(agency, name string, i int) bus.Alert {
	return bus.Alert{
		Labels:   map[string]string{"alertname": name, "agency": agency, "service": "web", "severity": "critical", "instance": fmt.Sprint(i)},
		StartsAt: time.Now(),
	}
}

// TestTwoReplicasOneIncident: two engines on one JetStream receive the same
// alerts at the same time, many times over (an HA Alertmanager pair posting
// to both): every key gets exactly one incident.
func TestTwoReplicasOneIncident(t *testing.T) {
	b, h := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := builtin.Open(ctx, b)
	require.NoError(t, err)
	var engines []*ticketing.Engine
	for range 2 {
		e, err := ticketing.New(ctx, ticketing.Options{Bus: b, Catalogue: h})
		require.NoError(t, err)
		engines = append(engines, e)
	}
	d := ticketing.DeliveryOptions{Name: "builtin", Backend: store, Primary: true}
	err = engines[0].EnsureDelivery(ctx, d)
	require.NoError(t, err)
	for _, e := range engines {
		go func() { _ = e.RunDelivery(ctx, d) }()
	}

	const keys, rounds = 10, 20
	var wg sync.WaitGroup
	for r := range rounds {
		for _, e := range engines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range keys {
					// Each round adds a new instance: alerts group by key.
					require.NoError(t, e.Process(ctx, "alpha", []bus.Alert{firing("alpha", fmt.Sprintf("Alert%d", k), r)}))
				}
			}()
		}
	}
	wg.Wait()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		recs, err := store.List(ctx, builtin.Filter{})
		require.NoError(c, err)
		require.Len(c, recs, keys)
		for _, r := range recs {
			assert.Equal(c, rounds, r.Count, r.Key)
		}
	}, 30*time.Second, 100*time.Millisecond)
	recs, err := store.List(ctx, builtin.Filter{})
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, r := range recs {
		require.False(t, seen[r.Key], "two incidents for key %s", r.Key)
		seen[r.Key] = true
		require.Equal(t, rounds, r.Count)
	}
}

// TestBackendOutage: while the backend is down nothing is lost and it is
// not hammered; when it returns every incident arrives, in order, once.
func TestBackendOutage(t *testing.T) {
	b, h := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := builtin.Open(ctx, b)
	require.NoError(t, err)
	counting := &countingBackend{Backend: store}
	e, err := ticketing.New(ctx, ticketing.Options{Bus: b, Catalogue: h})
	require.NoError(t, err)
	d := ticketing.DeliveryOptions{Name: "builtin", Backend: counting, Primary: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}
	err = e.EnsureDelivery(ctx, d)
	require.NoError(t, err)
	go func() { _ = e.RunDelivery(ctx, d) }()

	store.SetAvailable(false)
	const n = 15
	for i := range n {
		require.NoError(t, e.Process(ctx, "beta", []bus.Alert{firing("beta", fmt.Sprintf("A%d", i), 0)}))
	}
	// Resolve the first five again while the backend is still down.
	for i := range 5 {
		a := firing("beta", fmt.Sprintf("A%d", i), 0)
		a.EndsAt = time.Now()
		require.NoError(t, e.Process(ctx, "beta", []bus.Alert{a}))
	}
	// A window in which a storm would show: 2 s is ~5 backoff periods at
	// the 400 ms ceiling (nothing to wait for — the test counts attempts).
	time.Sleep(2 * time.Second)
	recs, err := store.List(ctx, builtin.Filter{})
	require.NoError(t, err)
	require.Empty(t, recs)
	attempts := counting.attempts()
	require.Less(t, attempts, 15, "a down backend gets one attempt per backoff, not a storm")

	store.SetAvailable(true)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		recs, err := store.List(ctx, builtin.Filter{})
		require.NoError(c, err)
		assert.Len(c, recs, n)
		assert.Equal(c, 5, countState(recs, ticketing.StateResolved))
	}, 30*time.Second, 100*time.Millisecond)
	recs, err = store.List(ctx, builtin.Filter{Agencies: []string{"beta"}})
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, r := range recs {
		require.False(t, ids[r.ID])
		ids[r.ID] = true
	}
	// In order: every incident's versions reached the store in sequence.
	counting.mu.Lock()
	defer counting.mu.Unlock()
	last := map[string]uint64{}
	for _, v := range counting.accepted {
		require.Greater(t, v.version, last[v.id], "incident %s delivered out of order", v.id)
		last[v.id] = v.version
	}
}

func countState(recs []builtin.Record, state string) int {
	n := 0
	for _, r := range recs {
		if r.State == state {
			n++
		}
	}
	return n
}

type delivery struct {
	id      string
	version uint64
}

type countingBackend struct {
	ticketing.Backend
	mu       sync.Mutex
	tries    int
	accepted []delivery
}

func (c *countingBackend) Deliver(ctx context.Context, inc *ticketing.Incident) (string, error) {
	c.mu.Lock()
	c.tries++
	c.mu.Unlock()
	ref, err := c.Backend.Deliver(ctx, inc)
	if err == nil {
		c.mu.Lock()
		c.accepted = append(c.accepted, delivery{inc.ID, inc.Version})
		c.mu.Unlock()
	}
	return ref, err
}

func (c *countingBackend) attempts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tries
}

// TestProcessFoldsAlertsOfAKey: a message of many alerts of few keys makes
// one incident per key with every alert counted; a key whose incident
// resolves and fires again beyond the reopen window within the same message
// gets a second incident, the first one kept resolved.
func TestProcessFoldsAlertsOfAKey(t *testing.T) {
	b, h := setup(t)
	ctx := context.Background()
	e, err := ticketing.New(ctx, ticketing.Options{Bus: b, Catalogue: h})
	require.NoError(t, err)
	var alerts []bus.Alert
	for i := range 2000 {
		alerts = append(alerts, firing("alpha", fmt.Sprintf("Fold%d", i%4), i))
	}
	require.NoError(t, e.Process(ctx, "alpha", alerts))
	for k := range 4 {
		_, stored, _ := ticketing.DedupKey("alpha", "web", fmt.Sprintf("Fold%d", k), nil, alerts[k].Labels)
		inc, err := e.Incident(ctx, stored)
		require.NoError(t, err)
		require.Equal(t, 500, inc.Count)
		require.LessOrEqual(t, len(inc.WorkLog), ticketing.MaxWorkLog, "the work log stays bounded")
		require.Positive(t, inc.WorkLogOmitted)
	}

	// Resolved, then firing again after the reopen window: two incidents.
	h.Get().Ticketing.ReopenWindow = 0
	a := firing("beta", "Again", 1)
	resolved := a
	resolved.EndsAt = time.Now().Add(-time.Second)
	again := a
	again.StartsAt = time.Now()
	require.NoError(t, e.Process(ctx, "beta", []bus.Alert{a, resolved, again}))
	_, stored, _ := ticketing.DedupKey("beta", "web", "Again", nil, a.Labels)
	inc, err := e.Incident(ctx, stored)
	require.NoError(t, err)
	require.Equal(t, ticketing.StateOpen, inc.State)
	require.Equal(t, uint64(1), inc.Version, "a new incident")
}

// blockingBackend holds every delivery until released, and records how
// many were in flight at once and in which order each incident's versions
// arrived.
type blockingBackend struct {
	release  chan struct{}
	mu       sync.Mutex
	inFlight int
	most     int
	versions map[string][]uint64
}

func (b *blockingBackend) Deliver(ctx context.Context, inc *ticketing.Incident) (string, error) {
	b.mu.Lock()
	b.inFlight++
	b.most = max(b.most, b.inFlight)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()
	select {
	case <-b.release:
	case <-ctx.Done():
		return "", ticketing.Temporary(ctx.Err(), 0)
	}
	b.mu.Lock()
	b.versions[inc.ID] = append(b.versions[inc.ID], inc.Version)
	b.mu.Unlock()
	return "T-" + inc.ID, nil
}

func (b *blockingBackend) peak() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.most
}

// TestDeliveriesInParallel: a slow backend gets different incidents at once
// — every lane of every agency busy — while each incident's versions still
// arrive in order. (The outbox entries once lacked the header that names
// their incident: every incident of an agency went through one lane, and a
// Remedy answering in 100 ms got 6.5 tickets a second.)
func TestDeliveriesInParallel(t *testing.T) {
	b, h := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := ticketing.New(ctx, ticketing.Options{Bus: b, Catalogue: h})
	require.NoError(t, err)
	slow := &blockingBackend{release: make(chan struct{}), versions: map[string][]uint64{}}
	d := ticketing.DeliveryOptions{Name: "slow", Backend: slow, Primary: true, Lanes: 4, Concurrency: 16}
	require.NoError(t, e.EnsureDelivery(ctx, d))
	go func() { _ = e.RunDelivery(ctx, d) }()

	const perAgency = 12
	for _, agency := range []string{"alpha", "beta"} {
		for i := range perAgency {
			a := firing(agency, fmt.Sprintf("Par%d", i), 0)
			require.NoError(t, e.Process(ctx, agency, []bus.Alert{a}))
			a.EndsAt = time.Now()
			require.NoError(t, e.Process(ctx, agency, []bus.Alert{a}))
		}
	}
	// Four incidents of each agency are delivered at once.
	require.Eventually(t, func() bool { return slow.peak() >= 8 }, 20*time.Second, 10*time.Millisecond,
		"deliveries of distinct incidents run in parallel across lanes and agencies")
	require.Equal(t, 8, slow.peak(), "at most Lanes per agency")
	close(slow.release)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		assert.Len(c, slow.versions, 2*perAgency)
		for id, vs := range slow.versions {
			assert.IsIncreasing(c, vs, "versions of %s in order", id)
			assert.NotEmpty(c, vs)
		}
	}, 30*time.Second, 50*time.Millisecond)
}
