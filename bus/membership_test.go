package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRendezvousMovesOnlyTheLeaversShare: a collector leaving moves only
// its own targets; one joining takes only from each a fair share.
func TestRendezvousMovesOnlyTheLeaversShare(t *testing.T) {
	three := []string{"c1", "c2", "c3"}
	owner := map[string]string{}
	count := map[string]int{}
	for i := range 3000 {
		k := fmt.Sprintf("job-%d/10.0.%d.%d:9100", i%7, i/250, i%250)
		owner[k] = Owner(three, k)
		count[owner[k]]++
	}
	for _, c := range three {
		require.InDelta(t, 1000, count[c], 120, "balanced: %v", count)
	}
	two := []string{"c1", "c3"}
	for k, o := range owner {
		now := Owner(two, k)
		if o != "c2" {
			require.Equal(t, o, now, "a target of a remaining collector stays put")
		} else {
			require.Contains(t, two, now)
		}
	}
	four := []string{"c1", "c2", "c3", "c4"}
	moved := 0
	for k, o := range owner {
		if now := Owner(four, k); now != o {
			require.Equal(t, "c4", now, "targets only move to the newcomer")
			moved++
		}
	}
	require.InDelta(t, 750, moved, 120)
	require.Empty(t, Owner(nil, "x"))
}

// TestMembershipOverKV: collectors see each other through the KV bucket; a
// leaver is gone at once, a crashed one after the TTL.
func TestMembershipOverKV(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := Open(ctx, Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	join := func(name string) (*Membership, context.CancelFunc) {
		m, err := b.NewMembership(ctx, MembershipOptions{Kind: "collector", Self: name, TTL: 2 * time.Second})
		require.NoError(t, err)
		mctx, mcancel := context.WithCancel(ctx)
		go func() { _ = m.Run(mctx) }()
		return m, mcancel
	}
	a, stopA := join("a")
	defer stopA()
	bm, stopB := join("b")
	c, stopC := join("c")
	changed := make(chan struct{}, 10)
	a.OnChange(func() { changed <- struct{}{} })
	require.Eventually(t, func() bool { return len(a.Members()) == 3 }, 5*time.Second, 50*time.Millisecond)

	stopB()
	require.NoError(t, bm.Leave(ctx))
	require.Eventually(t, func() bool { return len(a.Members()) == 2 }, 3*time.Second, 50*time.Millisecond, "a leaver is gone within a poll")
	<-changed

	stopC() // c crashes: no Leave
	require.Eventually(t, func() bool { return len(a.Members()) == 1 }, 6*time.Second, 100*time.Millisecond, "a crashed collector expires after the TTL")
	require.Equal(t, []string{"a"}, a.Members())
	require.True(t, a.Owns("anything"))
	_ = c
}
