// Package bench generates Samdrift's benchmark loads (remote_write ingest,
// alert streams, alert storms) and runs the side-by-side comparison with
// Debian's Prometheus that `make bench` prints.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// IngestLoad is a remote_write load: Series active series spread evenly
// over len(Tokens) agencies, pushed by Senders concurrent senders in
// requests of Batch samples (one sample per series per round), for
// Duration.
type IngestLoad struct {
	URL      string
	Tokens   []string // one per agency; the agency is the credential's
	Series   int
	Senders  int
	Batch    int
	Duration time.Duration
	// Progress, if set, gets a line every few seconds.
	Progress io.Writer
}

// IngestResult is what a load achieved.
type IngestResult struct {
	Accepted  int64         // samples in 2xx answers
	Rejected  int64         // samples in non-2xx answers (retried)
	Requests  int64         // 2xx requests
	Errors    int64         // failed requests
	Elapsed   time.Duration // from the first request to the last answer
	Latencies []time.Duration
}

// Rate is accepted samples per second.
func (r IngestResult) Rate() float64 { return float64(r.Accepted) / r.Elapsed.Seconds() }

// Quantile of the request latencies.
func (r IngestResult) Quantile(q float64) time.Duration {
	return quantile(r.Latencies, q)
}

// series of one agency: label sets, built once, sorted as remote write wants.
func agencySeries(agency, n int) [][]prompb.Label {
	out := make([][]prompb.Label, n)
	for i := range n {
		host := i / 100
		out[i] = []prompb.Label{
			{Name: "__name__", Value: "bench_metric_" + strconv.Itoa(i%100)},
			{Name: "cpu", Value: strconv.Itoa(i % 8)},
			{Name: "instance", Value: fmt.Sprintf("10.%d.%d.%d:9100", agency, host/250, host%250)},
			{Name: "job", Value: "node"},
			{Name: "mode", Value: "user"},
		}
	}
	return out
}

// RunIngest sends the load and reports what was accepted. Each sender owns
// a slice of one agency's series and sends them round after round, each
// round with a new timestamp, the next request after the previous answer
// (as one remote-write shard does); refused requests are retried.
func RunIngest(ctx context.Context, l IngestLoad) (IngestResult, error) {
	if l.Senders < len(l.Tokens) || l.Senders%len(l.Tokens) != 0 {
		return IngestResult{}, fmt.Errorf("senders (%d) must be a multiple of the agencies (%d)", l.Senders, len(l.Tokens))
	}
	perAgency := l.Series / len(l.Tokens)
	perSender := perAgency / (l.Senders / len(l.Tokens))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.Senders * 2}, Timeout: 60 * time.Second}
	var (
		accepted, rejected, requests, errs atomic.Int64
		mu                                 sync.Mutex
		lat                                []time.Duration
	)
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for s := range l.Senders {
		agency := s % len(l.Tokens)
		shard := s / len(l.Tokens)
		all := agencySeries(agency, perAgency)
		mine := all[shard*perSender : (shard+1)*perSender]
		wg.Go(func() {
			wr := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, l.Batch)}
			samples := make([]prompb.Sample, l.Batch)
			var raw []byte
			var buf bytes.Buffer
			var local []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				ts := time.Now().UnixMilli()
				for off := 0; off < len(mine) && ctx.Err() == nil; off += l.Batch {
					end := min(off+l.Batch, len(mine))
					wr.Timeseries = wr.Timeseries[:0]
					for i := off; i < end; i++ {
						samples[i-off] = prompb.Sample{Value: float64(ts % 1000), Timestamp: ts}
						wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: mine[i], Samples: samples[i-off : i-off+1]})
					}
					var err error
					if raw, err = appendMarshal(raw[:0], wr); err != nil {
						errs.Add(1)
						return
					}
					body := snappy.Encode(nil, raw)
					for ctx.Err() == nil {
						t0 := time.Now()
						code, err := post(ctx, client, l.URL, l.Tokens[agency], body, &buf)
						if err == nil && code/100 == 2 {
							accepted.Add(int64(end - off))
							requests.Add(1)
							local = append(local, time.Since(t0))
							break
						}
						if ctx.Err() != nil {
							break
						}
						errs.Add(1)
						rejected.Add(int64(end - off))
						time.Sleep(50 * time.Millisecond)
					}
				}
			}
		})
	}
	if l.Progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					el := time.Since(start)
					fmt.Fprintf(l.Progress, "  %5.0fs  %10d samples accepted  %9.0f samples/s  %d errors\n",
						el.Seconds(), accepted.Load(), float64(accepted.Load())/el.Seconds(), errs.Load())
				}
			}
		}()
	}
	wg.Wait()
	return IngestResult{Accepted: accepted.Load(), Rejected: rejected.Load(), Requests: requests.Load(), Errors: errs.Load(),
		Elapsed: time.Since(start), Latencies: lat}, nil
}

func appendMarshal(buf []byte, wr *prompb.WriteRequest) ([]byte, error) {
	n := wr.Size()
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := wr.MarshalToSizedBuffer(buf)
	return buf, err
}

func post(ctx context.Context, c *http.Client, url, token string, body []byte, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	buf.Reset()
	_, _ = io.Copy(buf, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// quantile of latencies (q in [0, 1]), without changing them.
func quantile(latencies []time.Duration, q float64) time.Duration {
	if len(latencies) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[min(len(l)-1, int(q*float64(len(l))))]
}
