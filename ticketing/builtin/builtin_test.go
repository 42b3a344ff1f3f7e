package builtin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/ticketing"
)

// TestPages: the list is paged newest first, every incident exactly once
// across the pages, whatever is written meanwhile; a page carries no
// per-alert state.
func TestPages(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	s, err := Open(ctx, b)
	require.NoError(t, err)
	go func() { _ = s.Run(ctx) }()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const n = 250
	for i := range n {
		inc := &ticketing.Incident{ID: fmt.Sprintf("SD-%04d", i), Agency: []string{"alpha", "beta"}[i%2], Service: "web", State: ticketing.StateOpen,
			OpenedAt: start.Add(time.Duration(i/3) * time.Second), Version: 1,
			Alerts: map[string]*ticketing.AlertState{"fp": {Labels: map[string]string{"instance": "x"}}}}
		_, err := s.Deliver(ctx, inc)
		require.NoError(t, err)
	}
	seen := map[string]bool{}
	var cursor *Cursor
	last := time.Time{}
	for pages := 0; ; pages++ {
		recs, next, err := s.Page(ctx, Filter{Limit: 100, After: cursor})
		require.NoError(t, err)
		if next != nil {
			require.Len(t, recs, 100)
		}
		for _, r := range recs {
			require.False(t, seen[r.ID], "incident %s on two pages", r.ID)
			seen[r.ID] = true
			require.Nil(t, r.Alerts, "a page carries no per-alert state")
			if !last.IsZero() {
				require.False(t, r.OpenedAt.After(last), "newest first")
			}
			last = r.OpenedAt
		}
		if next == nil {
			break
		}
		cursor = next
	}
	require.Len(t, seen, n)
	recs, _, err := s.Page(ctx, Filter{Agencies: []string{"beta"}, Limit: 1000})
	require.NoError(t, err)
	require.Len(t, recs, n/2)
	one, _, err := s.Get(ctx, "SD-0007")
	require.NoError(t, err)
	require.NotNil(t, one.Alerts, "one incident by id has its alerts")
}

// TestPageWhileWriting: a page read while incidents are written holds as
// many incidents as asked for.
func TestPageWhileWriting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	s, err := Open(ctx, b)
	require.NoError(t, err)
	go func() { _ = s.Run(ctx) }()
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			for i := range 500 {
				inc := &ticketing.Incident{ID: fmt.Sprintf("SD-%d-%04d", w, i), Agency: "alpha", Service: "web", State: ticketing.StateOpen,
					OpenedAt: time.Now(), Version: 1}
				_, _ = s.Deliver(ctx, inc)
				inc.Version = 2
				inc.Count = 2
				_, _ = s.Deliver(ctx, inc)
			}
			done <- struct{}{}
		}()
	}
	short := 0
	for range 4 {
		for {
			select {
			case <-done:
			default:
				recs, next, err := s.Page(ctx, Filter{Limit: 100})
				require.NoError(t, err)
				if next != nil && len(recs) != 100 {
					short++
				}
				continue
			}
			break
		}
	}
	require.Zero(t, short, "pages shorter than asked while more incidents exist")
}
