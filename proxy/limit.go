package proxy

import (
	"math"
	"time"
)

// gradientLimit is a replica's adaptive concurrency limit, in inputs in
// flight, in the manner of Envoy's adaptive concurrency filter and
// Netflix's gradient limits, with the signal TEI gives directly: TEI runs
// batches one after another, so beyond what its next batch can take, more
// inputs in flight only wait in TEI's own queue, where a query queues
// behind every document sent before it. TEI says, on every answer, how
// long the inputs waited in its queue (x-queue-time) and how long their
// batch ran (x-inference-time). While they waited less than a batch, the
// limit grows by a small allowance; beyond, it shrinks in proportion, so
// that the surplus waits in the sidecar's scheduler instead, where queries
// go first and waiting inputs are batched into fewer calls. It settles
// where TEI has about one batch running and one waiting: busy, and never
// a long queue.
//
// Without those headers (not TEI?) latency stands in: the least recent
// latency, drifting slowly up, against the recent one.
//
// It is not safe for concurrent use: the pool's mutex guards it.
type gradientLimit struct {
	limit    float64 // the current estimate
	min, max float64
	base     float64 // the unloaded latency, seconds (fallback signal)
	minBatch float64 // the shortest batch TEI ran, seconds (x-inference-time)
	short    float64 // recent latency EWMA, seconds (fallback signal)
	samples  int
}

// Tuning.
const (
	// queueTolerance is how many batches' worth of queueing inside TEI is
	// accepted before the limit shrinks.
	queueTolerance = 1.0
	// batchTolerance is how much longer than its shortest a TEI batch may
	// run before the limit shrinks. Where a batch's time grows with its
	// tokens (a CPU backend), everything in flight runs as one long batch
	// that a query must wait out, queue or no queue; bounding the batch's
	// time bounds that wait, while a batch still many times the shortest
	// keeps TEI's fixed cost per batch amortised (at most 1/16 of a batch).
	// Measured with bench/scenarios.sh (ingest beside queries, a CPU-like
	// cost): 8 kept ingest at 0.78 of TEI's own throughput, 16 at 0.85
	// and 24 at 0.87, with query p99 at 0.04, 0.10 and 0.13-0.19 of
	// TEI's. On a GPU a batch's time grows little with its size, and the
	// queue bounds the limit instead.
	batchTolerance = 16.0
	// latencyTolerance is, without TEI's stage times, how much slower than
	// unloaded the recent latency may be before the limit shrinks.
	latencyTolerance = 1.5
	// limitSmoothing weighs a new estimate against the current one.
	limitSmoothing = 0.2
	// shortWindow is the recent latency's EWMA sample count.
	shortWindow = 8
	// baseDrift is how far the unloaded latency moves towards each
	// sample above it.
	baseDrift = 0.002
)

// newGradientLimit starts at initial, within [min, max].
func newGradientLimit(initial, min, max int) *gradientLimit {
	return &gradientLimit{limit: float64(clamp(initial, min, max)), min: float64(min), max: float64(max)}
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

// current is the limit to enforce now.
func (g *gradientLimit) current() int { return int(math.Round(g.limit)) }

// sample is one successful call as the limiter sees it.
type sample struct {
	rtt              time.Duration
	queue, inference time.Duration // TEI's stage times, when staged
	staged           bool
	inflight         int // the replica's inputs in flight when it started, itself included
}

// observe feeds one successful call.
func (g *gradientLimit) observe(s sample) {
	sec := s.rtt.Seconds()
	if sec <= 0 {
		return
	}
	g.samples++
	if g.samples == 1 {
		g.base, g.short = sec, sec
	}
	g.short += (sec - g.short) * 2 / (shortWindow + 1)
	if sec < g.base {
		g.base = sec
	} else {
		g.base += (sec - g.base) * baseDrift
	}
	// TEI's shortest batch is learned from every call, loaded or not: the
	// first queries, sent before the load, say what a small batch costs.
	// It drifts up only with calls that ran unloaded: under load batches
	// are longer because the limit let them be, and a reference that
	// followed them would let the limit grow without end.
	batch := max(s.inference, time.Millisecond).Seconds()
	unused := float64(s.inflight) < g.limit/2
	if s.staged {
		if g.minBatch == 0 || batch < g.minBatch {
			g.minBatch = batch
		} else if unused {
			g.minBatch += (batch - g.minBatch) * baseDrift
		}
	}
	// A limit the traffic does not use says nothing: do not grow it.
	if unused {
		return
	}
	var gradient float64
	if s.staged {
		gradient = math.Min(queueTolerance*batch/max(s.queue.Seconds(), 1e-9), batchTolerance*g.minBatch/batch)
	} else {
		gradient = latencyTolerance * g.base / g.short
	}
	gradient = math.Max(0.5, math.Min(1, gradient))
	queue := math.Max(4, math.Sqrt(g.limit))
	next := g.limit*gradient + queue
	if gradient < 1 {
		next = g.limit * gradient
	}
	g.limit = g.limit*(1-limitSmoothing) + next*limitSmoothing
	g.limit = math.Max(g.min, math.Min(g.max, g.limit))
}

// overloaded halves the limit: TEI answered 429, so it holds more than it
// can take.
func (g *gradientLimit) overloaded() {
	g.limit = math.Max(g.min, g.limit/2)
}
