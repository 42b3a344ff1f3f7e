package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// A Shape is a remote-write load of fixed size, the same for every system
// it is sent to.
type Shape struct {
	Name string
	// Agencies each have Series series; every round sends one sample of
	// each, Interval after the previous round.
	Agencies, Series, Rounds int
	// Churn gives every round new series (a deployment replacing every
	// pod), instead of the same series again.
	Churn bool
	// Senders send concurrently (a multiple of Agencies), each its own
	// slice of an agency's series in requests of Batch samples, the next
	// after the previous answer (as one remote-write shard does).
	Senders, Batch int
	Interval       time.Duration
}

// The two shapes of make bench.
var (
	// Steady: 4 agencies × 100,000 series, the same series round after
	// round (about a minute at Prometheus 3's rate here).
	Steady = Shape{Name: "steady", Agencies: 4, Series: 100_000, Rounds: 40, Senders: 4, Batch: 2000, Interval: 15 * time.Second}
	// Churn: one agency, 400,000 new series in each of 3 rounds.
	Churn = Shape{Name: "churn", Agencies: 1, Series: 400_000, Rounds: 3, Churn: true, Senders: 4, Batch: 2000, Interval: 15 * time.Second}
)

// Samples is the number of samples of the shape.
func (s Shape) Samples() int { return s.Agencies * s.Series * s.Rounds }

// ActiveSeries is the number of series the shape creates.
func (s Shape) ActiveSeries() int {
	if s.Churn {
		return s.Agencies * s.Series * s.Rounds
	}
	return s.Agencies * s.Series
}

func (s Shape) String() string {
	what := "the same series each round"
	if s.Churn {
		what = "new series each round"
	}
	return fmt.Sprintf("%s: %d agencies × %d series × %d rounds (%s), %d senders, %d samples per request",
		s.Name, s.Agencies, s.Series, s.Rounds, what, s.Senders, s.Batch)
}

// Encoded is a shape's requests, snappy-compressed remote-write 1.0 bodies
// made before any clock starts: per sender, in the order it sends them.
type Encoded struct {
	Shape   Shape
	bodies  [][][]byte // sender -> request -> body
	samples [][]int    // sender -> request -> samples
	Bytes   int64
}

// Encode builds every request of the shape, its samples timestamped from
// the rounds' count of intervals ago up to a minute ago (old enough to be
// in order, young enough for every receiver's age limit).
func Encode(s Shape) (*Encoded, error) {
	if s.Senders < s.Agencies || s.Senders%s.Agencies != 0 {
		return nil, fmt.Errorf("senders (%d) must be a multiple of the agencies (%d)", s.Senders, s.Agencies)
	}
	perShard := s.Series / (s.Senders / s.Agencies)
	first := time.Now().Add(-time.Minute - time.Duration(s.Rounds)*s.Interval).UnixMilli()
	e := &Encoded{Shape: s, bodies: make([][][]byte, s.Senders), samples: make([][]int, s.Senders)}
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		errs  = make([]error, s.Senders)
	)
	for sender := range s.Senders {
		wg.Go(func() {
			agency, shard := sender%s.Agencies, sender/s.Agencies
			wr := &prompb.WriteRequest{}
			var raw []byte
			for r := range s.Rounds {
				round := -1
				if s.Churn {
					round = r
				}
				series := shapeSeries(agency, round, shard*perShard, perShard)
				ts := first + int64(r)*s.Interval.Milliseconds()
				for off := 0; off < len(series); off += s.Batch {
					end := min(off+s.Batch, len(series))
					wr.Timeseries = wr.Timeseries[:0]
					for i := off; i < end; i++ {
						wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: series[i],
							Samples: []prompb.Sample{{Value: float64((r*7 + i) % 1000), Timestamp: ts}}})
					}
					var err error
					if raw, err = appendMarshal(raw[:0], wr); err != nil {
						errs[sender] = err
						return
					}
					body := snappy.Encode(nil, raw)
					total.Add(int64(len(body)))
					e.bodies[sender] = append(e.bodies[sender], body)
					e.samples[sender] = append(e.samples[sender], end-off)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	e.Bytes = total.Load()
	return e, nil
}

// shapeSeries are n series of an agency from the from-th, of one churn
// round (or of every round, with round -1).
func shapeSeries(agency, round, from, n int) [][]prompb.Label {
	out := make([][]prompb.Label, n)
	for j := range n {
		i := from + j
		host := i / 100
		ls := []prompb.Label{
			{Name: "__name__", Value: "bench_metric_" + strconv.Itoa(i%100)},
			{Name: "cpu", Value: strconv.Itoa(i % 8)},
			{Name: "instance", Value: fmt.Sprintf("10.%d.%d.%d:9100", agency, host/250, host%250)},
			{Name: "job", Value: "node"},
			{Name: "mode", Value: "user"},
		}
		if round >= 0 {
			ls = append(ls, prompb.Label{Name: "pod", Value: "pod-" + strconv.Itoa(round)})
		}
		out[j] = ls
	}
	return out
}

// Send sends every request of e to url, the senders concurrently, tokens[a]
// for agency a (none when tokens is nil). A refused request is retried
// after 50 ms (and counted); the result's Elapsed runs from the first
// request to the last answer.
func Send(ctx context.Context, url string, tokens []string, e *Encoded, progress io.Writer) IngestResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.Shape.Senders * 2}, Timeout: 2 * time.Minute}
	var (
		accepted, rejected, requests, errs atomic.Int64
		mu                                 sync.Mutex
		lat                                []time.Duration
		wg                                 sync.WaitGroup
	)
	done := make(chan struct{})
	start := time.Now()
	for sender := range e.Shape.Senders {
		token := ""
		if tokens != nil {
			token = tokens[sender%e.Shape.Agencies]
		}
		wg.Go(func() {
			var buf bytes.Buffer
			local := make([]time.Duration, 0, len(e.bodies[sender]))
			for i, body := range e.bodies[sender] {
				for ctx.Err() == nil {
					t0 := time.Now()
					code, err := post(ctx, client, url, token, body, &buf)
					if err == nil && code/100 == 2 {
						accepted.Add(int64(e.samples[sender][i]))
						requests.Add(1)
						local = append(local, time.Since(t0))
						break
					}
					errs.Add(1)
					rejected.Add(int64(e.samples[sender][i]))
					time.Sleep(50 * time.Millisecond)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	if progress != nil {
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					el := time.Since(start)
					fmt.Fprintf(progress, "    %4.0fs  %10d of %d samples accepted  %9.0f samples/s  %d refused requests\n",
						el.Seconds(), accepted.Load(), e.Shape.Samples(), float64(accepted.Load())/el.Seconds(), errs.Load())
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	return IngestResult{Accepted: accepted.Load(), Rejected: rejected.Load(), Requests: requests.Load(), Errors: errs.Load(),
		Elapsed: time.Since(start), Latencies: lat}
}
