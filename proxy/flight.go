package proxy

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// The flight table: every piece of model work that requests wait on is a
// flight, in its pool's table while it is keyed, so that identical inputs
// arriving together are computed once.
//
// Invariants (all under pool.mu):
//   - A keyed flight is in the table from its creation until it is done or
//     abandoned; a request that misses the cache on a key in the table
//     waits on that flight instead of starting another.
//   - A flight's waiters are the requests that want its outcome. When the
//     last one leaves (its client went away, or its deadline passed), the
//     flight is abandoned: taken out of the table and the queue, and every
//     TEI call carrying only abandoned flights is cancelled. A call is
//     never cancelled while any flight it carries is still wanted.
//   - A flight lives as long as its longest-waiting waiter allows: its
//     deadline is the latest of theirs (none if any has none), and the TEI
//     calls carrying it get that deadline. A late joiner never inherits an
//     earlier caller's deadline.
//   - Every TEI call is counted by the server's wait group, added under
//     pool.mu only while the scheduler is open, so that Close cannot race
//     it. It runs on a goroutine of its own, on one whose previous call has
//     just finished (runChain), or, when it carries only one request's
//     work, on that request's goroutine (runInline).
//   - A flight is retried at most maxAttempts times; its outcome (done,
//     err and the result) is written once, under pool.mu, before its
//     waiters are woken, and never changes after.
//   - A flight's error concerns its own input or TEI, never another
//     request's input: a batch refused for one input is split and each
//     input is tried alone (see scheduler.failedLocked).

// priority orders work in a pool's queue.
type priority int

const (
	// interactive is work someone waits for: queries and reranks.
	interactive priority = iota
	// bulk is ingest: batches of documents, nobody waiting on one text.
	bulk
	numPriorities
)

func (p priority) String() string { return [...]string{"interactive", "bulk"}[p] }

// maxAttempts bounds how often one flight is sent to TEI.
const maxAttempts = 4

// flight is one unit of model work that requests wait on: one distinct
// input to embed, one whole rerank, or one call passed through.
type flight struct {
	key    key
	keyed  bool
	prio   priority
	origin origin // the request that created it, for traces and TEI's logs
	// keep stores the outcome in the caches: some waiter did not ask
	// for no-store. Read outside pool.mu when the outcome is cached.
	keep atomic.Bool

	// What to compute: exactly one is set.
	embed  *embedWork
	rerank *rerankWork
	pass   *passWork

	// The outcome, written once before done is set.
	done  bool
	err   error
	entry *entry
	rank  *rankResult
	resp  *tei.Response

	// pool.mu
	waiters    []*waiter
	deadline   time.Time // the latest deadline among its waiters
	unbounded  bool      // some waiter has no deadline
	queued     bool
	prev, next *flight    // queue links
	calls      []*teiCall // calls in progress carrying it
	sent       bool       // some of it reached TEI
	attempts   int
	avoid      *replica // the replica it last failed on
	solo       bool     // never batched with other flights again
}

// embedWork is one input to embed.
type embedWork struct {
	batch  *batchSpec
	input  []byte // its JSON, as sent to TEI
	weight int    // its share of x-compute-tokens, by length
}

// batchSpec is a route and the settings of an embedding call: flights with
// equal keys are batched into one TEI call.
type batchSpec struct {
	route      string
	key        string // route and tail
	head, tail []byte // the body around the list of inputs
}

// passWork is one call sent to TEI as the client wrote it.
type passWork struct {
	method, path string
	body         []byte
	n            int // inputs it carries: the permits it needs
}

// inputs is how many inputs of f still wait to be sent.
func (f *flight) inputs() int {
	switch {
	case f.embed != nil:
		return 1
	case f.rerank != nil:
		return f.rerank.unsent()
	}
	return max(f.pass.n, 1)
}

// waiter is one request waiting on flights.
type waiter struct {
	joined  int // flights another request had started
	flights []*flight
	pending int // flights not yet done; -1 once it left
	done    chan struct{}
}

func newWaiter(n int) *waiter {
	return &waiter{flights: make([]*flight, 0, n), done: make(chan struct{})}
}

// attachLocked makes w wait on f.
func (w *waiter) attachLocked(f *flight, dl time.Time, bounded bool) {
	w.flights = append(w.flights, f)
	if f.done {
		return
	}
	w.pending++
	f.waiters = append(f.waiters, w)
	switch {
	case !bounded:
		f.unbounded = true
	case dl.After(f.deadline):
		f.deadline = dl
	}
}

// submit makes w wait on fs, after replacing each keyed flight already in
// the table by that one, and queues the new ones. It refuses the work when
// no replica can take it, or the queue is full. When a call could start at
// once carrying only w's work, it is returned for the request to make on
// its own goroutine (runInline) rather than on a new one.
func (p *pool) submit(ctx context.Context, w *waiter, fs []*flight) (*teiCall, error) {
	dl, bounded := ctx.Deadline()
	cfg := p.s.cfg
	sc := &p.sched
	p.mu.Lock()
	defer p.mu.Unlock()
	if sc.closed {
		return nil, errClosed
	}
	if !p.usableLocked() {
		return nil, p.unavailableLocked()
	}
	need := 0
	for _, f := range fs {
		if !f.keyed || sc.flights[f.key] == nil {
			need += f.inputs()
		}
	}
	// A request always gets in when nothing waits: however large, it is
	// scheduled chunk by chunk. Only a queue already holding work refuses.
	if q := sc.queuedTotal(); q > 0 && q+need > cfg.QueueInputs {
		return nil, &overloadError{msg: "Model is overloaded: the sidecar's queue is full", retryAfter: sc.drainTime(q)}
	}
	var fresh []*flight
	for i, f := range fs {
		if f.keyed {
			if old := sc.flights[f.key]; old != nil {
				fs[i] = old
				if f.keep.Load() {
					old.keep.Store(true)
				}
				p.s.m.coalesced.WithLabelValues(p.name).Inc()
				w.joined++
				w.attachLocked(old, dl, bounded)
				continue
			}
			sc.flights[f.key] = f
		}
		fresh = append(fresh, f)
		w.attachLocked(f, dl, bounded)
		sc.enqueueLocked(f, false)
	}
	c := sc.dispatchClaimLocked(w)
	if cfg.QueueInputs == 0 && slices.ContainsFunc(fresh, func(f *flight) bool { return f.queued }) {
		// No waiting allowed: what TEI cannot take now is refused, as TEI
		// itself does. A call already formed runs, cancelled, to account
		// for itself.
		p.leaveLocked(w)
		if c != nil {
			go sc.runChain(c)
		}
		return nil, &overloadError{msg: "Model is overloaded", retryAfter: time.Second}
	}
	return c, nil
}

// runInline makes c, a call carrying only w's work, on the request's own
// goroutine, which would otherwise wait for another to make it: on a small
// machine each goroutine made ready can cost a thread's wake-up, dearer
// than the call to TEI itself. If ctx ends first, w leaves as in await,
// and the error is what await would return (left is true). The call is
// then cancelled, unless another request has joined its work meanwhile:
// it runs on for that one (a call is never cancelled while its work is
// wanted), and this request's error comes when the call ends.
func (p *pool) runInline(ctx context.Context, w *waiter, c *teiCall) (left bool, err error) {
	gone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(gone)
		p.mu.Lock()
		defer p.mu.Unlock()
		err = p.leaveAtLocked(ctx, w)
	})
	p.sched.run(c, false)
	if stop() {
		return false, nil
	}
	<-gone
	return true, err
}

// await waits until every flight of w is done, or ctx ends. A request whose
// deadline passed while its work still waited in the queue gets a 429 with
// the time the queue needs to drain; one whose work was in TEI gets ctx's
// error.
func (p *pool) await(ctx context.Context, w *waiter) error {
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leaveAtLocked(ctx, w)
}

// leaveAtLocked takes w off its work as ctx ends and says why: nil when
// it finished meanwhile, a 429 when its work never left the queue, ctx's
// error once some of it was in TEI.
func (p *pool) leaveAtLocked(ctx context.Context, w *waiter) error {
	if w.pending == 0 {
		return nil // finished as ctx ended
	}
	neverSent := !slices.ContainsFunc(w.flights, func(f *flight) bool { return !f.done && f.sent })
	p.leaveLocked(w)
	wait := p.sched.drainTime(p.sched.queuedTotal())
	var why error
	if !p.readyLocked() {
		why = p.unavailableLocked()
	}
	switch {
	case !neverSent || !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ctx.Err()
	case why != nil:
		return why // it waited for a replica that did not come back
	}
	return &overloadError{msg: "Model is overloaded: the request waited in the sidecar's queue past its deadline", retryAfter: wait}
}

// leaveLocked takes w off its flights, abandoning those nobody else waits on.
func (p *pool) leaveLocked(w *waiter) {
	if w.pending <= 0 {
		return
	}
	for _, f := range w.flights {
		if f.done {
			continue
		}
		if i := slices.Index(f.waiters, w); i >= 0 {
			f.waiters = slices.Delete(f.waiters, i, i+1)
		}
		if len(f.waiters) == 0 {
			p.sched.completeLocked(f, context.Canceled)
		}
	}
	w.pending = -1
}
