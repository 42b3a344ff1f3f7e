package bus

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOwnerSpreads: members whose names differ in one byte share keys that
// differ in one byte evenly (with FNV-1a, "ru1" and "ru2" ranked the same
// way for most agencies and one process evaluated all of them), and a
// member that leaves gives only its own keys away.
func TestOwnerSpreads(t *testing.T) {
	for _, members := range [][]string{{"ru1", "ru2"}, {"c1", "c2", "c3"}, {"router-a", "router-b", "router-c", "router-d"}} {
		for _, keys := range []string{"a%02d", "agency-%d", "http://127.0.0.1:%d/metrics"} {
			const n = 600
			owned := map[string]int{}
			for i := range n {
				owned[Owner(members, fmt.Sprintf(keys, 30000+i))]++
			}
			for _, m := range members {
				share := float64(owned[m]) / n
				want := 1 / float64(len(members))
				require.InDelta(t, want, share, want*0.25, "%v, keys %q: %s owns %d of %d", members, keys, m, owned[m], n)
			}
		}
	}
	// Small sets too: twenty agencies over two processes, neither empty.
	owned := map[string]int{}
	for i := 1; i <= 20; i++ {
		owned[Owner([]string{"ru1", "ru2"}, fmt.Sprintf("a%02d", i))]++
	}
	require.Len(t, owned, 2, "%v", owned)

	// Stability: removing a member moves only its keys.
	all, less := []string{"c1", "c2", "c3"}, []string{"c1", "c3"}
	for i := range 300 {
		k := fmt.Sprintf("k%d", i)
		if before := Owner(all, k); before != "c2" {
			require.Equal(t, before, Owner(less, k), k)
		}
	}
}
