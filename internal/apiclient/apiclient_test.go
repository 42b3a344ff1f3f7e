package apiclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHungServer: a server that accepts and never answers costs a command
// its timeout, not forever.
func TestHungServer(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	c := New(srv.URL, "t")
	c.HTTP.Timeout = 200 * time.Millisecond
	start := time.Now()
	err := c.Get(context.Background(), "/api/v1/admin/usage", nil)
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Error(t, c.WaitAccepted(context.Background(), 500*time.Millisecond))
}

// TestErrors: the API's envelope is read into the error; data into v.
func TestErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"forbidden","error":"this needs an admin credential"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","data":{"n":3}}`))
	}))
	defer srv.Close()
	var v struct{ N int }
	err := New(srv.URL, "bad").Get(context.Background(), "/x", &v)
	var ae *Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusForbidden, ae.Status)
	require.Equal(t, "this needs an admin credential", ae.Msg)
	require.NoError(t, New(srv.URL, "good").Get(context.Background(), "/x", &v))
	require.Equal(t, 3, v.N)
	require.ErrorContains(t, New(srv.URL, "").Get(context.Background(), "/x", &v), "need --token")
}
