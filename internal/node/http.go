package node

import (
	"context"
	"errors"
	"net/http"
	"time"

	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// HTTP server timeouts: a client that trickles its request or never reads
// its answer cannot hold a connection for longer than these.
const (
	httpReadHeaderTimeout = 10 * time.Second
	// httpWriteTimeout covers the answer: longer than the query timeout.
	httpWriteTimeout = 2*time.Minute + 30*time.Second
	httpIdleTimeout  = 2 * time.Minute
	httpMaxHeader    = 64 << 10
)

// setupHTTP serves the route table. It is the first actor to stop:
// readiness turns false, the listener closes and requests in flight finish,
// so intake refuses before anything behind it stops.
func (n *Node) setupHTTP(_ context.Context, p *parts, as *actors) error {
	srv := &http.Server{
		Handler:           n.mux(p, n.routes(p)),
		ReadHeaderTimeout: min(httpReadHeaderTimeout, n.cfg.ReadTimeout),
		// The whole request, body included (--web.read-timeout, 1m: a
		// 32 MiB push at 1 MiB/s fits).
		ReadTimeout:    n.cfg.ReadTimeout,
		WriteTimeout:   httpWriteTimeout,
		IdleTimeout:    httpIdleTimeout,
		MaxHeaderBytes: httpMaxHeader,
	}
	as.add(actor{stage: stageHTTP, name: "http", run: func(context.Context) error {
		if err := srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, interrupt: func() {
		n.prober.shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}})
	return nil
}

// rulesRetriever returns the rules and alerts the caller may see, from
// this process's rule engine (none where another process runs the rules).
func (p *parts) rulesRetriever() func(context.Context) v1.RulesRetriever {
	if p.ruler == nil {
		return nil
	}
	return p.ruler.Retriever
}
