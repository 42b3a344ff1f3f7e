package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// TestEntriesAreBounded: a query of megabytes costs the trail a bounded
// entry with its hash; a failed write is counted.
func TestEntriesAreBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	reg := prometheus.NewRegistry()
	l := New(p, nil, reg)
	huge := strings.Repeat("up{agency=\"beta\"} or ", 250_000) // 5 MB
	for range 3 {
		require.NoError(t, l.Write(Entry{Who: "alpha-cred", Action: "cross_agency_denied", Detail: map[string]any{"query": huge, "match": []string{huge, "x"}}}))
	}
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Less(t, fi.Size(), int64(8*1024), "three 5 MB queries cost the trail a few kB")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(huge))
	require.Contains(t, string(b), hex.EncodeToString(sum[:]), "the full text is identified by its hash")

	bad := New(filepath.Join(p, "not-a-dir", "x"), nil, prometheus.NewRegistry())
	require.Error(t, bad.Write(Entry{Action: "x"}))
	require.InDelta(t, 1, testutil.ToFloat64(bad.failures), 0)
}
