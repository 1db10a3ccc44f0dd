package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// load is the outcome of driving a server with concurrent clients.
type load struct {
	latencies []time.Duration // of the requests that succeeded
	elapsed   time.Duration   // from the first request to the last answer
	refused   int             // calls that returned a refusal (errRefused)
}

// errRefused marks a call the server turned away for load (a 429): drive
// counts it and goes on, after refusalPause, where any other error stops
// it. Only the load scenarios' calls return it.
var errRefused = errors.New("refused for load")

// refusalPause keeps a refused client from spinning on the server.
const refusalPause = 10 * time.Millisecond

// drive runs clients workers, each calling call (with its number, from 0)
// in a loop, until maxRequests calls have started or duration has passed,
// whichever comes first. The first error stops every worker and is
// returned; calls in flight then are cancelled.
func drive(ctx context.Context, clients int, duration time.Duration, maxRequests int, call func(ctx context.Context, worker int) error) (load, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		started  atomic.Int64
		refused  atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lat      = make([][]time.Duration, clients)
	)
	begin := time.Now()
	deadline := begin.Add(duration)
	for w := range clients {
		wg.Go(func() {
			for ctx.Err() == nil && started.Add(1) <= int64(maxRequests) && time.Now().Before(deadline) {
				t0 := time.Now()
				err := call(ctx, w)
				if errors.Is(err, errRefused) {
					refused.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(refusalPause):
					}
					continue
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	l := load{elapsed: time.Since(begin), refused: int(refused.Load())}
	if firstErr != nil {
		return l, firstErr
	}
	if err := ctx.Err(); err != nil {
		return l, err
	}
	for _, ls := range lat {
		l.latencies = append(l.latencies, ls...)
	}
	return l, nil
}

// SweepLevel is the concurrency sweep's result for one client count.
type SweepLevel struct {
	Clients  int   `json:"clients"`
	Target   Load  `json:"target"`
	Baseline *Load `json:"baseline,omitempty"`
	// Ratio is target mean latency / baseline mean latency; Speedup is
	// target throughput / baseline throughput. Both are absent without a
	// baseline.
	Ratio   *float64 `json:"ratio,omitempty"`
	Speedup *float64 `json:"speedup,omitempty"`
}

// Load is one sweep level on one server: single-query embed calls, each
// text made unique so no cache answers it.
type Load struct {
	Requests  int     `json:"requests"`
	DurationS float64 `json:"duration_s"`
	// Throughput is requests (one query each) per second of wall time.
	Throughput float64 `json:"throughput"`
	// Mean and the percentiles are request latencies in seconds.
	Mean float64 `json:"mean_s"`
	P50  float64 `json:"p50_s"`
	P95  float64 `json:"p95_s"`
	P99  float64 `json:"p99_s"`
	// Replicas is how the sidecar spread the level's inputs over its
	// replicas (its /metrics); absent when the server is not the sidecar.
	Replicas []PoolUse `json:"replicas,omitempty"`
}

// sweepLevel drives p with clients concurrent query embeds, watched
// through the sidecar's metrics when p is the sidecar.
func (p participant) sweepLevel(ctx context.Context, clients int, duration time.Duration, maxRequests int) (Load, error) {
	var l load
	run := func() (time.Duration, error) {
		var err error
		l, err = drive(ctx, clients, duration, maxRequests, func(ctx context.Context, _ int) error {
			return p.c.query(ctx, unique(ShortQuery), nil)
		})
		return l.elapsed, err
	}
	var uses []PoolUse
	var err error
	if p.m != nil {
		uses, err = p.m.measure(ctx, run)
	} else {
		_, err = run()
	}
	if err != nil {
		return Load{}, err
	}
	st := summarize(seconds(l.latencies), 1)
	out := Load{
		Requests:  len(l.latencies),
		DurationS: l.elapsed.Seconds(),
		Mean:      st.Mean,
		P50:       st.P50,
		P95:       st.P95,
		P99:       st.P99,
		Replicas:  uses,
	}
	if l.elapsed > 0 {
		out.Throughput = float64(out.Requests) / l.elapsed.Seconds()
	}
	return out, nil
}
