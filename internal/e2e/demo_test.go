package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestDemo: `samdrift demo` shows every demo agency's data through the query
// API within a minute, each agency token sees only its own.
func TestDemo(t *testing.T) {
	addr := freeAddr(t)
	p := start(t, addr, "demo", "--data-dir", filepath.Join(t.TempDir(), "demo"))
	require.Eventually(t, func() bool { return strings.Contains(p.Logs.String(), "ops-demo-token") }, 10*time.Second, 50*time.Millisecond)
	agencies := []string{"af", "bo", "digg", "ehm", "pm", "ssc", "tullverket"}
	require.Eventually(t, func() bool {
		return len(query(t, addr, "ops-demo-token", `count by (agency) (up)`)) == len(agencies)
	}, 60*time.Second, time.Second)
	for _, a := range agencies {
		got := query(t, addr, a+"-demo-token", `up`)
		require.NotEmpty(t, got, a)
		for _, s := range got {
			require.Equal(t, a, s.Metric["agency"])
		}
	}
	// The simulated services expose application metrics too.
	require.Eventually(t, func() bool {
		return len(query(t, addr, "digg-demo-token", `rate(http_requests_total[1m])`)) > 0
	}, 30*time.Second, time.Second)

	// bo's complaints service fails 30s in; its outage alert (for: 1m)
	// becomes an incident of bo within two minutes of the start.
	require.Eventually(t, func() bool {
		_, incs := incidents(t, addr, "bo-demo-token", "")
		for _, inc := range incs {
			if inc.Service == "anmalan" && inc.AlertName == "ServiceDown" {
				return true
			}
		}
		return false
	}, 150*time.Second, time.Second)
	_, digg := incidents(t, addr, "digg-demo-token", "")
	for _, inc := range digg {
		require.Equal(t, "digg", inc.Agency)
	}
	p.Stop()
}

// TestTracing: with --tracing.endpoint a scraped batch is traced from the
// collector through the router to the store as one trace, the context
// carried in NATS headers.
func TestTracing(t *testing.T) {
	var mu sync.Mutex
	spans := map[string]map[string]bool{} // trace id -> span names
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					id := string(s.TraceId)
					if spans[id] == nil {
						spans[id] = map[string]bool{}
					}
					spans[id][s.Name] = true
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer otlp.Close()

	alpha := target(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "catalogue.yaml")
	writeFile(t, cfg, testCatalogue(alpha.Listener.Addr().String(), "127.0.0.1:1"))
	addr := freeAddr(t)
	start(t, addr, "run", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--tracing.endpoint", otlp.URL+"/v1/traces")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, names := range spans {
			if names["collector.scrape"] && names["router.route"] && names["store.append"] {
				return true
			}
		}
		return false
	}, 60*time.Second, 500*time.Millisecond, "no trace spans collector → router → store")
}
