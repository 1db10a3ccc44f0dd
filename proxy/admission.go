package proxy

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// errOverloaded is returned when an input could not get an upstream permit
// within the request's deadline or the wait queue is full.
var errOverloaded = errors.New("model is overloaded")

// admission keeps the inputs in flight to one TEI within its
// max_concurrent_requests: TEI takes one permit per input without waiting
// and answers 429 beyond it, so the proxy queues the excess itself, in FIFO
// order, up to a bound.
type admission struct {
	sem      *semaphore.Weighted
	max      int64
	queueMax int64
	waiting  atomic.Int64
	depth    prometheus.Gauge
	inflight prometheus.Gauge
}

func newAdmission(max, queueMax int, depth, inflight prometheus.Gauge) *admission {
	return &admission{sem: semaphore.NewWeighted(int64(max)), max: int64(max), queueMax: int64(queueMax), depth: depth, inflight: inflight}
}

// acquire takes n permits, waiting in line while the queue has room and ctx
// allows. n must not exceed the upstream's limit (callers split first).
func (a *admission) acquire(ctx context.Context, n int) error {
	w := int64(n)
	if w > a.max {
		return errOverloaded
	}
	if !a.sem.TryAcquire(w) {
		if a.waiting.Add(w) > a.queueMax {
			a.waiting.Add(-w)
			return errOverloaded
		}
		a.depth.Add(float64(n))
		err := a.sem.Acquire(ctx, w)
		a.waiting.Add(-w)
		a.depth.Sub(float64(n))
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return errOverloaded
			}
			return err
		}
	}
	a.inflight.Add(float64(n))
	return nil
}

// release returns n permits.
func (a *admission) release(n int) {
	a.inflight.Sub(float64(n))
	a.sem.Release(int64(n))
}
