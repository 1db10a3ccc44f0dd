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
// batch ran (x-inference-time). The limit grows by a small allowance while
// both of these hold, and shrinks in proportion when either fails:
//
//   - the queue: the inputs waited at most queueTolerance times the
//     longest recent batch, that is, for the batch that was running when
//     they came and little more. On a GPU, where a batch takes about as
//     long whatever its size, this is the bound: TEI keeps one batch
//     running and about one waiting, busy, and never a long queue.
//   - the wait: queue and batch together took at most latencyBudget times
//     the shortest batch TEI ran. Where a batch's time grows with its
//     tokens (a CPU backend), TEI takes everything queued as its next
//     batch, so the queue never grows beyond one batch; a query instead
//     waits out the batch running and then its own, both as long as the
//     inputs in flight make them. This bounds that wait, while keeping
//     TEI's fixed cost per batch small beside its batches.
//
// The surplus waits in the sidecar's scheduler instead, where queries go
// first and waiting inputs are batched into fewer calls.
//
// Without those headers (not TEI?) latency stands in: the least recent
// latency, drifting slowly up, against the recent one.
//
// It is not safe for concurrent use: the pool's mutex guards it.
type gradientLimit struct {
	limit     float64 // the current estimate
	min, max  float64
	base      float64   // the unloaded latency, seconds (fallback signal)
	minBatch  float64   // the shortest batch TEI ran, seconds (x-inference-time)
	peakBatch float64   // the longest recent batch, decaying, seconds (x-inference-time)
	peakAt    time.Time // when peakBatch was last updated
	short     float64   // recent latency EWMA, seconds (fallback signal)
	samples   int
	// seq numbers the calls started; cut is seq when the limit last
	// shrank. A call started before that saw the congestion the cut
	// answered, and does not shrink the limit again.
	seq, cut uint64
}

// Tuning.
const (
	// queueTolerance is how many of the longest recent batches an input
	// may wait for in TEI's queue before the limit shrinks. The longest,
	// not this call's own: on a CPU backend batches alternate long and
	// short (the short one takes what came during the long one), and the
	// short batch's inputs, having waited out the long one, are no sign of
	// a queue building up.
	queueTolerance = 1.5
	// peakMemory is, in batches, how long the longest recent batch is
	// remembered: it decays by e every peakMemory times its own length.
	// In time, not calls: one batch can answer a hundred calls.
	peakMemory = 4.0
	// latencyBudget is how many times its shortest batch TEI may take for
	// a call, queue and batch together, before the limit shrinks: the
	// trade between a query's wait and TEI's fixed cost per batch.
	// Measured with bench/scenarios.sh (8 clients ingesting 32-text
	// batches beside 1 client of queries, a CPU-like cost of 5 ms a batch
	// and 200 µs a token): 32 keeps ingest at 0.96-0.98 of TEI's own
	// throughput with query p99 at 0.19-0.20 of TEI's, and a flood of 256
	// clients of queries at 0.97 of the static limit's throughput; 16 and
	// 24 gave 0.89 and 0.92 of the ingest, with query p99 at 0.09 and 0.12.
	latencyBudget = 32.0
	// latencyTolerance is, without TEI's stage times, how much slower than
	// unloaded the recent latency may be before the limit shrinks.
	latencyTolerance = 1.5
	// limitSmoothing is how much of the gradient's cut is taken at once.
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

// start numbers a call about to start, for its sample.
func (g *gradientLimit) start() uint64 {
	g.seq++
	return g.seq
}

// sample is one successful call as the limiter sees it.
type sample struct {
	rtt              time.Duration
	queue, inference time.Duration // TEI's stage times, when staged
	staged           bool
	inflight         int       // the replica's inputs in flight when it started, itself included
	inputs           int       // its own inputs
	seq              uint64    // start's number for it; 0: none
	end              time.Time // when it was answered; zero: no decay
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
	// It drifts up only with calls that had TEI to themselves: under load
	// batches are longer because the limit let them be, and a reference
	// that followed them would let the limit grow without end. (Drifting
	// with calls that merely left half the limit unused did that under a
	// flood of queries: the limit outgrew the clients, the reference
	// followed the long batches, and the limit rose to TEI's permits.)
	batch := max(s.inference, time.Millisecond).Seconds()
	unused := float64(s.inflight) < g.limit/2
	if s.staged {
		if !s.end.IsZero() && !g.peakAt.IsZero() && g.peakBatch > 0 {
			g.peakBatch *= math.Exp(-s.end.Sub(g.peakAt).Seconds() / (peakMemory * g.peakBatch))
		}
		g.peakBatch, g.peakAt = max(batch, g.peakBatch), s.end
		if g.minBatch == 0 || batch < g.minBatch {
			g.minBatch = batch
		} else if s.inflight <= s.inputs {
			g.minBatch += (batch - g.minBatch) * baseDrift
		}
	}
	// A limit the traffic does not use says nothing: do not grow it.
	if unused {
		return
	}
	var gradient float64
	if s.staged {
		waited := s.queue.Seconds()
		gradient = math.Min(queueTolerance*g.peakBatch/max(waited, 1e-9), latencyBudget*g.minBatch/(waited+batch))
	} else {
		gradient = latencyTolerance * g.base / g.short
	}
	gradient = math.Max(0.5, math.Min(1, gradient))
	if gradient >= 1 {
		// Additive increase, as TCP's congestion avoidance: a limit's
		// worth of inputs answered grows it by an allowance of
		// sqrt(limit) (at least 4), each call in proportion to its share.
		// Grown whole by every call, a flood of single-query calls (a
		// hundred to a batch) grew it by hundreds a batch, faster than
		// any cut could answer.
		share := 1.0
		if s.inputs > 0 {
			share = math.Min(1, float64(s.inputs)/g.limit)
		}
		g.limit += math.Max(4, math.Sqrt(g.limit)) * share
	} else {
		// Cut once per round of calls, as TCP cuts its window once per
		// loss event: the calls of one long batch all come back late
		// together, and each cutting the limit again took it from
		// hundreds to its floor in one batch.
		if s.seq != 0 && s.seq <= g.cut {
			return
		}
		g.cut = g.seq
		g.limit *= 1 - limitSmoothing*(1-gradient)
	}
	g.limit = math.Max(g.min, math.Min(g.max, g.limit))
}

// overloaded halves the limit: TEI answered 429 to the call numbered seq,
// so it holds more than it can take. Once per round of calls, as a cut
// for latency is: every call of the round that overfilled TEI may be
// refused, and each halving again would take the limit to its floor.
func (g *gradientLimit) overloaded(seq uint64) {
	if seq != 0 && seq <= g.cut {
		return
	}
	g.cut = g.seq
	g.limit = math.Max(g.min, g.limit/2)
}
