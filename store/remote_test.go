package store

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/samdrift/samdrift/catalogue"
)

// TestRemoteReadDownIsAWarning: an engine that fails leaves the local
// data answering, with a warning, not an error.
func TestRemoteReadDownIsAWarning(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "nope", 500)
	}))
	defer srv.Close()
	c, err := catalogue.Parse([]byte("provider: {name: P}\nagencies:\n  - {id: alpha, name: A, phase: run}\n"), "c.yaml")
	require.NoError(t, err)
	st, err := New(Options{Dir: filepath.Join(t.TempDir(), "tsdb"), RemoteRead: &RemoteConfig{URL: srv.URL + "/api/v1/read"}})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Apply(c))
	app := st.DB("alpha").Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "x", "agency", "alpha"), time.Now().UnixMilli(), 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	q, err := st.AgencyQueryable("alpha").Querier(time.Now().Add(-4*time.Hour).UnixMilli(), time.Now().Add(time.Minute).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "x"))
	n := 0
	for ss.Next() {
		n++
	}
	require.NoError(t, ss.Err())
	require.Equal(t, 1, n, "the local series")
	require.NotEmpty(t, ss.Warnings(), "the engine's failure is reported as a warning")
	require.Positive(t, hits.Load())
}
