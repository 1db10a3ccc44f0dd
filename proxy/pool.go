package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// pool is the set of TEI replicas serving one model ("embed" or
// "rerank"), with the work waiting for them: the flight table (identical
// inputs computed once) and the scheduler's queues. One mutex guards all of
// it, so that a decision (which flight, which replica, how many inputs)
// sees one consistent state.
type pool struct {
	name string
	s    *Server

	// ident is the model the pool serves, from the /info of its first
	// ready replica: cache keys, defaults (auto_truncate) and the route
	// checks come from it. Nil until a replica is ready.
	ident atomic.Pointer[tei.Info]
	// dim is the dense embedding dimension of ident's model; 0 otherwise.
	dim atomic.Int64

	mu       sync.Mutex
	replicas []*replica
	turn     int // rotates ties between equally loaded replicas
	sched    scheduler
	// ready is closed and replaced whenever a replica becomes ready, for
	// Connect to wait on.
	ready chan struct{}
}

func newPool(s *Server, name string) *pool {
	p := &pool{name: name, s: s, ready: make(chan struct{})}
	p.sched.init(p)
	return p
}

// info returns the pool's model identity, or nil before any replica is
// ready.
func (p *pool) info() *tei.Info { return p.ident.Load() }

// add puts a replica for raw (a base URL) from source (the configured
// entry) into the pool and starts its prober.
func (p *pool) add(ctx context.Context, raw, source string, c *tei.Client) *replica {
	r := newReplica(p, raw, source, c)
	rctx, cancel := context.WithCancel(ctx)
	r.stop = cancel
	p.mu.Lock()
	p.replicas = append(p.replicas, r)
	p.s.m.replicaState.WithLabelValues(p.name, r.addr, stateStarting.String()).Set(1)
	p.s.goOwned(func() { r.run(rctx) })
	p.mu.Unlock()
	return r
}

// accept takes a replica's /info: the first ready replica defines the
// pool's model; later ones must serve the same model and revision, or they
// are refused so that their vectors never mix with the pool's.
func (p *pool) accept(r *replica, info *tei.Info, dim int, waited time.Duration) {
	log := p.s.log.With("pool", p.name, "replica", r)
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.state == stateDraining || r.removed || r.held {
		return
	}
	ident := p.ident.Load()
	others := slices.ContainsFunc(p.replicas, func(o *replica) bool { return o != r && o.state == stateReady })
	if ident != nil && others && !sameModel(ident, info) {
		reason := fmt.Sprintf("serves %s, the pool serves %s", modelName(info), modelName(ident))
		p.setStateLocked(r, stateRefused, reason)
		log.Error("replica refused: it serves another model than the pool, and vectors must not mix", "reason", reason)
		return
	}
	if ident == nil || !sameModel(ident, info) {
		if ident != nil {
			log.Warn("the pool's model changed: cache keys follow the new revision", "was", modelName(ident), "now", modelName(info))
		}
		p.ident.Store(info)
		p.dim.Store(int64(dim))
	}
	prev := r.info.Load()
	unchanged := r.state == stateReady && prev != nil && sameModel(prev, info) &&
		prev.MaxClientBatchSize == info.MaxClientBatchSize && prev.MaxConcurrentRequests == info.MaxConcurrentRequests
	r.info.Store(info)
	r.dim.Store(int64(dim))
	if unchanged {
		return // a periodic check found nothing new
	}
	r.maxBatch = max(min(info.MaxClientBatchSize, info.MaxConcurrentRequests), 1)
	maxc := max(info.MaxConcurrentRequests, 1)
	if p.s.cfg.AdaptiveConcurrency {
		// Start at one full batch and let the measured latency move it
		// (starting higher let the first seconds of a load queue two
		// batches' worth inside TEI, where queries waited behind them);
		// at least a few inputs, so that a small replica still takes
		// several queries at once.
		floor := min(r.maxBatch, 4)
		r.lim = newGradientLimit(r.maxBatch, floor, maxc)
		r.limit = r.lim.current()
	} else {
		r.lim, r.limit = nil, maxc
	}
	p.s.m.concurrencyLimit.WithLabelValues(p.name, r.addr).Set(float64(r.limit))
	r.byteLimit = int(p.s.cfg.UpstreamPayloadLimit)
	p.setStateLocked(r, stateReady, "")
	log.Info("TEI is ready", "model", info.ModelID, "revision", info.Revision(),
		"model_type", info.ModelType.Kind(), "dtype", info.ModelDType,
		"max_client_batch_size", info.MaxClientBatchSize, "max_concurrent_requests", info.MaxConcurrentRequests,
		"waited", waited.Round(time.Millisecond).String())
	// Replicas refused under an identity that has just changed are checked
	// again against the new one.
	for _, o := range p.replicas {
		if o.state == stateRefused {
			o.recheck()
		}
	}
	close(p.ready)
	p.ready = make(chan struct{})
	p.sched.dispatchLocked()
}

// sameModel reports whether two replicas compute the same vectors.
func sameModel(a, b *tei.Info) bool {
	return a.ModelID == b.ModelID && a.Revision() == b.Revision() && a.ModelType.Kind() == b.ModelType.Kind()
}

func modelName(i *tei.Info) string {
	if rev := i.Revision(); rev != "" {
		return i.ModelID + "@" + rev
	}
	return i.ModelID
}

// setState moves r to state for reason.
func (p *pool) setState(r *replica, state replicaState, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setStateLocked(r, state, reason)
}

func (p *pool) setStateLocked(r *replica, state replicaState, reason string) {
	if r.removed || r.state == stateDraining && state != stateDraining {
		return // leaving: a late prober's word does not bring it back
	}
	if r.state != state {
		p.s.m.replicaState.WithLabelValues(p.name, r.addr, r.state.String()).Set(0)
		p.s.m.replicaState.WithLabelValues(p.name, r.addr, state.String()).Set(1)
	}
	r.state, r.reason = state, reason
	if !p.usableLocked() {
		// Work waiting for this pool would wait for nothing: fail it
		// now, retryable, as when a breaker is open.
		p.sched.failQueuedLocked(p.unavailableLocked())
	}
}

// usableLocked reports whether some replica may be sent work now or soon:
// ready with its breaker not open, or back from a restart and having its
// /info read again (a matter of milliseconds, worth waiting for).
func (p *pool) usableLocked() bool {
	return slices.ContainsFunc(p.replicas, func(r *replica) bool {
		return r.state == stateReady && !r.breakerOpen() ||
			r.state == stateStarting && r.info.Load() != nil
	})
}

// readyLocked reports whether some replica is ready with its breaker not
// open.
func (p *pool) readyLocked() bool {
	return slices.ContainsFunc(p.replicas, func(r *replica) bool {
		return r.state == stateReady && !r.breakerOpen()
	})
}

// unavailableLocked says why no replica can take work, for the caller.
func (p *pool) unavailableLocked() error {
	down, open, starting := 0, 0, 0
	for _, r := range p.replicas {
		switch {
		case r.state == stateReady && r.breaker.State() == gobreaker.StateOpen:
			open++
		case r.state == stateStarting:
			starting++
		case r.state == stateDown && r.reason == reasonAPIKey:
			return errTEIAuth
		default:
			down++
		}
	}
	retry := p.s.cfg.BreakerOpenFor
	switch {
	case open > 0 && down == 0 && starting == 0:
		return &unavailableError{reason: "TEI is failing; the circuit breaker is open, retry later", retryAfter: retry}
	case starting > 0 && down == 0 && open == 0:
		return &unavailableError{reason: "TEI is still starting (downloading or loading the model)", retryAfter: 5 * time.Second}
	}
	return &unavailableError{reason: fmt.Sprintf("TEI is unavailable (%s: %d down, %d with the breaker open, %d starting)",
		p.name, down, open, starting), retryAfter: retry}
}

// pickLocked chooses the replica for work wanting need free inputs in one
// call: among ready replicas with room for that much (or for a full batch
// or their whole limit, when need is more) whose breaker lets a call
// through, the one with the fewest inputs in flight (two random choices
// when there are more than four), preferring any but avoid, which just
// failed this work. It returns the replica and the breaker's callback for
// the call's outcome.
func (p *pool) pickLocked(need int, prio priority, avoid *replica) (*replica, func(error)) {
	eligible := func(r *replica) bool {
		return r.state == stateReady && r.free(prio) >= min(need, r.maxBatch, r.limit) && !r.breakerOpen()
	}
	if n := len(p.replicas); n > 4 {
		// Two random choices, the less loaded wins: O(1) for large pools.
		for range 4 {
			a, b := p.replicas[rand.IntN(n)], p.replicas[rand.IntN(n)]
			var pick *replica
			okA, okB := eligible(a) && a != avoid, eligible(b) && b != avoid
			switch {
			case okA && okB:
				pick = a
				if b.inflight < a.inflight {
					pick = b
				}
			case okA:
				pick = a
			case okB:
				pick = b
			default:
				continue
			}
			if done, err := pick.breaker.Allow(); err == nil {
				return pick, done
			}
		}
	}
	var cands []*replica
	for _, r := range p.replicas {
		if eligible(r) {
			cands = append(cands, r)
		}
	}
	if len(cands) > 1 && avoid != nil {
		cands = slices.DeleteFunc(cands, func(c *replica) bool { return c == avoid })
	}
	for len(cands) > 0 {
		p.turn++
		r := leastLoaded(cands, p.turn)
		if done, err := r.breaker.Allow(); err == nil {
			return r, done
		}
		// Half-open with its probe already out: not this one, for now.
		cands = slices.DeleteFunc(cands, func(c *replica) bool { return c == r })
	}
	return nil, nil
}

// leastLoaded returns the candidate with the fewest inputs in flight, ties
// taken in turn from turn's place; above four candidates, the better of two
// chosen at random (the power of two choices: near-best balance without
// scanning, and no herd on one replica).
func leastLoaded(cands []*replica, turn int) *replica {
	if len(cands) > 4 {
		a, b := cands[rand.IntN(len(cands))], cands[rand.IntN(len(cands))]
		if b.inflight < a.inflight {
			return b
		}
		return a
	}
	start := turn % len(cands)
	best := cands[start]
	for i := 1; i < len(cands); i++ {
		if r := cands[(start+i)%len(cands)]; r.inflight < best.inflight {
			best = r
		}
	}
	return best
}

// wait blocks until the pool has a ready replica or ctx ends.
func (p *pool) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		ok := slices.ContainsFunc(p.replicas, func(r *replica) bool { return r.state == stateReady })
		ch := p.ready
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// replica returns the pool's replica at base URL raw (as configured), or
// nil.
func (p *pool) replica(raw string) *replica {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replicas {
		if r.raw == raw {
			return r
		}
	}
	return nil
}
