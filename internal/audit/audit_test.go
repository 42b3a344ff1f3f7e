package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConcurrentWritesStayWholeLines: every entry is one JSON line, none
// torn by concurrent writers, in a file only its owner reads.
func TestConcurrentWritesStayWholeLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l := Open(p)
	l.now = func() time.Time { return time.Date(2026, 10, 1, 12, 0, 0, 0, time.FixedZone("CEST", 7200)) }
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 25 {
				require.NoError(t, l.Write(Entry{Who: "w", Action: "test", Agency: "a", Detail: map[string]any{"i": i, "j": j}}))
			}
		})
	}
	wg.Wait()
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		require.Equal(t, "2026-10-01T10:00:00Z", e.Time.Format(time.RFC3339), "times are UTC")
		n++
	}
	require.Equal(t, 200, n)
	require.NoError(t, (*Log)(nil).Write(Entry{}), "a nil log is a no-op")
	require.Error(t, Open(filepath.Join(p, "not-a-dir", "x")).Write(Entry{}))
	require.Equal(t, "named", Me("named"))
}
