package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// scheduler holds a pool's waiting work and decides, whenever a replica has
// room, what to send where: it takes flights in priority order (bulk keeps
// a guaranteed share), batches embedding inputs with equal settings into
// one TEI call up to the replica's batch, byte and concurrency limits,
// sizes rerank chunks to what the replica can take, and retries failures on
// another replica within the flights' deadlines. All of it runs under
// pool.mu; calls to TEI run outside it.
type scheduler struct {
	p       *pool
	flights map[key]*flight
	queue   [numPriorities]flightQueue
	// skipped counts interactive calls started while bulk work waited; at
	// bulkEvery, bulk goes next.
	skipped   int
	bulkEvery int
	closed    bool
	// timers hold flights waiting out a back-off before they are queued
	// again.
	timers map[*time.Timer][]*flight

	// claiming is set while dispatchLocked may hand one call back to the
	// goroutine that asked for work instead of starting a goroutine for
	// it: a request's own (claimFor, only a call carrying nothing but that
	// request's work) or the one of a call just finished (claimFor nil).
	// claimed is the call handed back.
	claiming bool
	claimFor *waiter
	claimed  *teiCall

	// The measured drain rate, inputs per second, for Retry-After.
	rate       float64
	rateStart  time.Time
	rateInputs int
}

func (sc *scheduler) init(p *pool) {
	sc.p = p
	sc.flights = make(map[key]*flight)
	sc.timers = make(map[*time.Timer][]*flight)
	sc.bulkEvery = max(int(math.Round(1/p.s.cfg.BulkShare))-1, 1)
	sc.rateStart = time.Now()
}

// flightQueue is a FIFO of flights, linked through the flights themselves.
type flightQueue struct {
	head, tail *flight
	inputs     int
}

func (q *flightQueue) pushBack(f *flight) {
	f.prev, f.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = f
	} else {
		q.head = f
	}
	q.tail = f
}

func (q *flightQueue) pushFront(f *flight) {
	f.prev, f.next = nil, q.head
	if q.head != nil {
		q.head.prev = f
	} else {
		q.tail = f
	}
	q.head = f
}

func (q *flightQueue) remove(f *flight) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		q.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		q.tail = f.prev
	}
	f.prev, f.next = nil, nil
}

func (sc *scheduler) queuedTotal() int {
	n := 0
	for i := range sc.queue {
		n += sc.queue[i].inputs
	}
	return n
}

// enqueueLocked puts f in its queue, at the front when it is being retried.
func (sc *scheduler) enqueueLocked(f *flight, front bool) {
	if f.queued || f.done {
		return
	}
	q := &sc.queue[f.prio]
	if front {
		q.pushFront(f)
	} else {
		q.pushBack(f)
	}
	f.queued = true
	q.inputs += f.inputs()
	sc.p.s.m.queueInputs.WithLabelValues(sc.p.name, f.prio.String()).Set(float64(q.inputs))
}

func (sc *scheduler) unqueueLocked(f *flight) {
	if !f.queued {
		return
	}
	q := &sc.queue[f.prio]
	q.remove(f)
	f.queued = false
	q.inputs -= f.inputs()
	sc.p.s.m.queueInputs.WithLabelValues(sc.p.name, f.prio.String()).Set(float64(q.inputs))
}

// nextClassLocked picks the queue to serve next, or -1 when both are empty.
func (sc *scheduler) nextClassLocked() priority {
	ia, bu := sc.queue[interactive].head != nil, sc.queue[bulk].head != nil
	switch {
	case ia && bu && sc.skipped >= sc.bulkEvery:
		return bulk
	case ia:
		return interactive
	case bu:
		return bulk
	}
	return -1
}

// dispatchLocked starts calls while work waits and a replica has room.
func (sc *scheduler) dispatchLocked() {
	if sc.queuedTotal() > 0 && !sc.p.usableLocked() {
		// Nothing can take the work (the last breaker opened, the last
		// replica went down): fail it now, retryable, rather than let it
		// wait out its deadline.
		sc.failQueuedLocked(sc.p.unavailableLocked())
		return
	}
	for !sc.closed {
		prio := sc.nextClassLocked()
		if prio < 0 {
			return
		}
		f := sc.queue[prio].head
		r, done := sc.p.pickLocked(f.needLocked(), f.prio, f.avoid)
		if r == nil {
			return // no room: the next call to finish dispatches again
		}
		if prio == interactive && sc.queue[bulk].head != nil {
			sc.skipped++
		} else if prio == bulk {
			sc.skipped = 0
		}
		c := sc.formLocked(r, f)
		c.report = done
		sc.startLocked(c)
	}
}

// needLocked is how many free inputs a replica needs to take f now: one for
// embedding inputs (they batch with others), the next chunk of a rerank
// (sent whole rather than in slivers of whatever room is left, each a TEI
// call of its own), all of a call passed through.
func (f *flight) needLocked() int {
	switch {
	case f.pass != nil:
		return max(f.pass.n, 1)
	case f.rerank != nil && len(f.rerank.pending) > 0:
		sp := f.rerank.pending[0]
		return max(sp.hi-sp.lo, 1)
	}
	return 1
}

// teiCall is one TEI call in progress.
type teiCall struct {
	r       *replica
	report  func(error) // the breaker's callback
	flights []*flight
	span    span // rerank: the texts it scores
	n       int  // inputs it carries
	live    int  // flights it carries that are still wanted
	body    []byte
	ctx     context.Context
	cancel  context.CancelFunc

	// hung is set when the call outlived its attempt timeout and was
	// cancelled to be tried on another replica.
	hung atomic.Bool
	// failover is an attempt timeout: a replica that answers nothing for
	// that long, while another could take the work, is given up on.
	failover time.Duration
	// startInflight is the replica's inputs in flight when it started,
	// itself included; took is how long it ran. The limiter learns from
	// both, and from seq.
	startInflight int
	// seq is the limiter's number for it (gradientLimit.start).
	seq  uint64
	took time.Duration

	// Results, written by run before finish.
	items [][]byte      // embed: each flight's item
	ranks []tei.Rank    // rerank: this chunk's ranks, indices in the chunk
	resp  *tei.Response // TEI's answer
}

// minAttemptTimeout is the least time a replica gets to answer before work
// is taken elsewhere; four times its longest call when that is longer.
const minAttemptTimeout = 10 * time.Second

// maxBatchScan bounds how far into the queue a batch looks for inputs of
// the same settings.
const maxBatchScan = 1024

// formLocked builds the call that takes f (and, for embedding inputs, more
// flights of the same settings) to r.
func (sc *scheduler) formLocked(r *replica, f *flight) *teiCall {
	c := &teiCall{r: r}
	switch {
	case f.embed != nil:
		b := f.embed.batch
		limit := max(min(r.maxBatch, r.free(f.prio)), 1)
		size := len(b.head) + len(b.tail) + len(f.embed.input)
		sc.unqueueLocked(f)
		c.flights = append(make([]*flight, 0, min(limit, 64)), f)
		if !f.solo {
			scanned := 0
			for g := sc.queue[f.prio].head; g != nil && len(c.flights) < limit && scanned < maxBatchScan; scanned++ {
				next := g.next
				if g.embed != nil && !g.solo && g.embed.batch.key == b.key && size+1+len(g.embed.input) <= r.byteLimit {
					size += 1 + len(g.embed.input)
					sc.unqueueLocked(g)
					c.flights = append(c.flights, g)
				}
				g = next
			}
		}
		c.n = len(c.flights)
	case f.rerank != nil:
		rw := f.rerank
		sp := rw.pending[0]
		k := min(sp.hi-sp.lo, r.maxBatch, max(r.free(f.prio), 1))
		k = rw.fit(sp.lo, k, r.byteLimit)
		c.span = span{sp.lo, sp.lo + k}
		// The queue counts unsent texts: take them out as they are sent.
		q := &sc.queue[f.prio]
		q.inputs -= k
		if rw.pending[0].lo += k; rw.pending[0].lo == rw.pending[0].hi {
			rw.pending = rw.pending[1:]
		}
		if len(rw.pending) == 0 {
			q.remove(f)
			f.queued = false
		}
		sc.p.s.m.queueInputs.WithLabelValues(sc.p.name, f.prio.String()).Set(float64(q.inputs))
		c.flights = []*flight{f}
		c.n = k
	default:
		sc.unqueueLocked(f)
		c.flights = []*flight{f}
		c.n = max(min(f.pass.n, r.limit), 1)
	}
	return c
}

// startLocked accounts for c and runs it.
func (sc *scheduler) startLocked(c *teiCall) {
	r := c.r
	r.inflight += c.n
	if c.flights[0].prio == bulk {
		r.bulkInflight += c.n
	}
	r.calls++
	c.startInflight = r.inflight
	if r.lim != nil {
		c.seq = r.lim.start()
	}
	sc.p.s.m.inflightInputs.WithLabelValues(sc.p.name, r.addr).Set(float64(r.inflight))
	for _, f := range c.flights {
		f.sent = true
		f.calls = append(f.calls, c)
	}
	c.live = len(c.flights)
	if sc.otherReplicaLocked(r) {
		c.failover = max(minAttemptTimeout, 4*time.Duration(r.longestCall.Load()))
	}
	// No deadline of its own: each waiter leaves at its deadline, and the
	// call is cancelled when the last one has left. A waiter joining late
	// keeps its own, later deadline.
	c.ctx, c.cancel = context.WithCancel(context.Background())
	sc.p.s.wg.Add(1)
	if sc.claiming && sc.claimed == nil && (sc.claimFor == nil || c.onlyFor(sc.claimFor)) {
		sc.claimed = c
		return
	}
	go sc.runChain(c)
}

// onlyFor reports whether every flight c carries is w's alone.
func (c *teiCall) onlyFor(w *waiter) bool {
	for _, f := range c.flights {
		if len(f.waiters) != 1 || f.waiters[0] != w {
			return false
		}
	}
	return true
}

// dispatchClaimLocked dispatches, handing back one call for the caller's
// goroutine to run (see scheduler.claiming), or nil.
func (sc *scheduler) dispatchClaimLocked(w *waiter) *teiCall {
	sc.claiming, sc.claimFor = true, w
	sc.dispatchLocked()
	c := sc.claimed
	sc.claiming, sc.claimFor, sc.claimed = false, nil, nil
	return c
}

// runChain makes c, then each call that its finish starts next, on one
// goroutine: a call ending while work waits hands its goroutine on rather
// than starting another (on a small machine each new goroutine can wake a
// thread).
func (sc *scheduler) runChain(c *teiCall) {
	for c != nil {
		c = sc.run(c, true)
	}
}

// run makes the call and hands its outcome to finish; with chain, it
// returns the next call for this goroutine to make, if finish started one.
func (sc *scheduler) run(c *teiCall, chain bool) *teiCall {
	defer sc.p.s.wg.Done()
	defer c.cancel()
	start := time.Now()
	if c.failover > 0 {
		t := time.AfterFunc(c.failover, func() {
			c.hung.Store(true)
			c.cancel()
		})
		defer t.Stop()
	}
	route := c.route()
	var ts trace.Span
	c.ctx, ts = sc.p.s.callContext(c.ctx, c, route)
	err := sc.exec(c)
	d := time.Since(start)
	c.took = d
	if err != nil && c.hung.Load() {
		err = &tei.TransportError{Kind: tei.KindTimeout, Err: fmt.Errorf("no answer in %s: trying another replica", c.failover)}
	}
	attempts := 0
	for _, f := range c.flights {
		attempts = max(attempts, f.attempts+1)
	}
	ts.SetAttributes(attribute.String("sidecar.outcome", outcomeOf(err)), attribute.Int("sidecar.attempt", attempts))
	if err != nil {
		ts.SetStatus(codes.Error, outcomeOf(err))
	}
	ts.End()
	c.report(err)
	var te *tei.Error
	if err == nil || errors.As(err, &te) {
		c.r.answered(d, err == nil)
	}
	m := sc.p.s.m
	o := outcomeOf(err)
	m.upstreamCalls.WithLabelValues(sc.p.name, c.r.addr, route, o).Inc()
	m.upstreamLatency.WithLabelValues(sc.p.name, c.r.addr, o).Observe(d.Seconds())
	m.upstreamInputs.WithLabelValues(sc.p.name, c.r.addr).Add(float64(c.n))
	return sc.finish(c, err, chain)
}

// route is the TEI route c calls.
func (c *teiCall) route() string {
	f := c.flights[0]
	switch {
	case f.embed != nil:
		return f.embed.batch.route
	case f.rerank != nil:
		return "/rerank"
	}
	return f.pass.path
}

// exec sends c's request and reads the answer into c.
func (sc *scheduler) exec(c *teiCall) (err error) {
	f := c.flights[0]
	cl := c.r.client
	switch {
	case f.embed != nil:
		b := f.embed.batch
		size := len(b.head) + len(b.tail) + len(c.flights) - 1
		for _, g := range c.flights {
			size += len(g.embed.input)
		}
		body := make([]byte, 0, size)
		body = append(body, b.head...)
		for i, g := range c.flights {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, g.embed.input...)
		}
		c.body = append(body, b.tail...)
		c.resp, err = cl.Do(c.ctx, http.MethodPost, b.route, c.body)
		if err != nil {
			return err
		}
		c.items, err = tei.SplitItems(c.resp.Body, make([][]byte, 0, len(c.flights)))
		if err == nil && len(c.items) != len(c.flights) {
			err = fmt.Errorf("%d items for %d inputs", len(c.items), len(c.flights))
		}
		if err != nil {
			return &tei.TransportError{Kind: tei.KindOther, Err: fmt.Errorf("%s response: %w", b.route, err)}
		}
		return nil
	case f.rerank != nil:
		c.body = f.rerank.body(c.span)
		c.ranks, c.resp, err = cl.RerankBody(c.ctx, c.body, c.span.hi-c.span.lo)
		return err
	}
	c.resp, err = cl.Do(c.ctx, f.pass.method, f.pass.path, f.pass.body)
	return err
}

// finish records c's outcome: results for its flights, or what its failure
// means for them (retry, split, fail); then starts what the freed room
// allows, handing back one of those calls with chain.
func (sc *scheduler) finish(c *teiCall, err error, chain bool) (next *teiCall) {
	p := sc.p
	// Entries are built, checked and cached outside the lock: a new
	// request finds a finished input in the cache before the flight
	// leaves the table. The shared cache's writes are queued before the
	// waiters wake, too, so that once a client has its answer a Flush
	// (a test's, a shutdown's) covers them.
	var entries []*entry
	if err == nil && c.flights[0].embed != nil {
		entries = makeEntries(c)
		for i, f := range c.flights {
			if entries[i] == nil {
				p.s.m.nonFinite.WithLabelValues(p.name).Inc()
				continue
			}
			if f.keyed && f.keep.Load() {
				entries[i] = p.s.cache.add(f.key, entries[i])
				if p.s.shared != nil {
					p.s.shared.Put(f.key, encodeEntry(entries[i]))
				}
			}
		}
	}

	p.mu.Lock()
	r := c.r
	r.inflight -= c.n
	if c.flights[0].prio == bulk {
		r.bulkInflight -= c.n
	}
	r.calls--
	p.s.m.inflightInputs.WithLabelValues(p.name, r.addr).Set(float64(r.inflight))
	for _, f := range c.flights {
		if i := slices.Index(f.calls, c); i >= 0 {
			f.calls = slices.Delete(f.calls, i, i+1)
		}
	}
	var merge *flight
	if err == nil {
		sc.countDrainedLocked(c.n)
		if r.lim != nil {
			smp := sample{rtt: c.took, inflight: c.startInflight, inputs: c.n, seq: c.seq, end: time.Now()}
			if c.resp != nil {
				smp.queue, smp.inference, smp.staged = c.resp.Stages()
			}
			r.lim.observe(smp)
			r.limit = r.lim.current()
			p.s.m.concurrencyLimit.WithLabelValues(p.name, r.addr).Set(float64(r.limit))
		}
		f := c.flights[0]
		switch {
		case f.embed != nil:
			for i, g := range c.flights {
				if entries[i] == nil {
					sc.completeLocked(g, errNonFinite)
					continue
				}
				g.entry, g.resp = entries[i], c.resp
				sc.completeLocked(g, nil)
			}
		case f.rerank != nil:
			if !f.done && f.rerank.add(c) && len(f.calls) == 0 {
				merge = f
			}
		default:
			f.resp = c.resp
			sc.completeLocked(f, nil)
		}
	} else {
		sc.failedLocked(c, err)
	}
	p.removeIfIdleLocked(r) // a draining replica leaves with its last call
	if chain {
		next = sc.dispatchClaimLocked(nil)
	} else {
		sc.dispatchLocked()
	}
	p.mu.Unlock()

	if merge != nil {
		res := merge.rerank.result()
		// Cached before the flight leaves the table, as embeddings are: a
		// request that comes as soon as the first has its answer finds it.
		if merge.keyed && merge.keep.Load() {
			p.s.rankCache.add(merge.key, res)
			p.s.shared.Put(merge.key, encodeRanked(res))
		}
		p.mu.Lock()
		if !merge.done {
			merge.rank = res
			sc.completeLocked(merge, nil)
		}
		p.mu.Unlock()
	}
	return next
}

// retry is what a failed call means for the flights it carried.
type retry int

const (
	// retryNo: the error is the flights' answer.
	retryNo retry = iota
	// retrySplit: TEI refused a batch of several inputs; each is tried
	// alone, so that one bad input fails only its own request.
	retrySplit
	// retrySmaller: the body was over the replica's payload limit; the
	// limit learned is halved and the inputs sent again in smaller calls.
	retrySmaller
	// retryLater: TEI is at capacity (429): back off, on any replica.
	retryLater
	// retryElsewhere: the replica failed (no connection, reset, 503,
	// 5xx): try another one.
	retryElsewhere
)

// retryFor decides what err from a call carrying n inputs of flights
// flights means.
func retryFor(err error, flights, n int) retry {
	var te *tei.Error
	var tr *tei.TransportError
	switch {
	case errors.As(err, &te):
		switch {
		case te.Status == http.StatusTooManyRequests:
			return retryLater
		case te.Status == http.StatusRequestEntityTooLarge && n > 1:
			return retrySmaller
		case te.Status == http.StatusServiceUnavailable || te.Status >= 500:
			return retryElsewhere
		case te.Status != http.StatusUnauthorized && flights > 1:
			return retrySplit
		}
	case errors.As(err, &tr):
		if tr.Kind == tei.KindDial || tr.Kind == tei.KindReset {
			return retryElsewhere
		}
	}
	return retryNo
}

// failedLocked handles a failed call.
func (sc *scheduler) failedLocked(c *teiCall, err error) {
	r := c.r
	how := retryFor(err, len(c.flights), c.n)
	if c.hung.Load() {
		how = retryElsewhere
	}
	switch how {
	case retrySmaller:
		r.byteLimit = max(len(c.body)/2, 1)
	case retryLater:
		// De-weight the replica: fewer inputs in flight there until its
		// calls succeed again. A 429 is back-pressure, not a failure.
		if r.lim != nil {
			r.lim.overloaded(c.seq)
			r.limit = r.lim.current()
		} else {
			r.limit = max(r.limit*3/4, 1)
		}
		p := sc.p
		p.s.m.concurrencyLimit.WithLabelValues(p.name, r.addr).Set(float64(r.limit))
	}
	var later []*flight
	for _, f := range c.flights {
		if f.done {
			continue
		}
		f.attempts++
		switch {
		case how == retryNo || f.attempts >= maxAttempts:
			sc.completeLocked(f, err)
			continue
		case how == retrySplit:
			f.solo = true
		case how == retryElsewhere || how == retryLater:
			f.avoid = r
		}
		if f.rerank != nil {
			sc.unsendLocked(f, c.span)
		}
		if how == retrySplit || how == retrySmaller || (how == retryElsewhere || how == retryLater) && sc.otherReplicaLocked(r) {
			sc.p.s.m.retries.WithLabelValues(sc.p.name, how.String()).Inc()
			sc.requeueLocked(f)
			continue
		}
		later = append(later, f)
	}
	if len(later) > 0 {
		sc.laterLocked(later, backoff(later[0].attempts-1, tei.RetryAfter(err)), err, how)
	}
}

func (r retry) String() string {
	return [...]string{"none", "split", "smaller", "backpressure", "elsewhere"}[r]
}

// otherReplicaLocked reports whether a usable replica other than r exists.
func (sc *scheduler) otherReplicaLocked(r *replica) bool {
	return slices.ContainsFunc(sc.p.replicas, func(o *replica) bool { return o != r && o.state == stateReady })
}

// requeueLocked puts f back at the front of its queue.
func (sc *scheduler) requeueLocked(f *flight) { sc.enqueueLocked(f, true) }

// unsendLocked returns a rerank chunk's texts to f's unsent ones.
func (sc *scheduler) unsendLocked(f *flight, sp span) {
	f.rerank.unsend(sp)
	if f.queued {
		q := &sc.queue[f.prio]
		q.inputs += sp.hi - sp.lo
		sc.p.s.m.queueInputs.WithLabelValues(sc.p.name, f.prio.String()).Set(float64(q.inputs))
	}
}

// laterLocked queues fs again after wait, unless their deadline passes
// first, in which case err is their answer.
func (sc *scheduler) laterLocked(fs []*flight, wait time.Duration, err error, how retry) {
	var keep []*flight
	for _, f := range fs {
		if !f.unbounded && !f.deadline.IsZero() && time.Until(f.deadline) < wait {
			sc.completeLocked(f, err)
			continue
		}
		keep = append(keep, f)
	}
	if len(keep) == 0 {
		return
	}
	sc.p.s.m.retries.WithLabelValues(sc.p.name, how.String()).Inc()
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		sc.p.mu.Lock()
		defer sc.p.mu.Unlock()
		if _, ok := sc.timers[t]; !ok {
			return // stopped by close
		}
		delete(sc.timers, t)
		for _, f := range keep {
			if !f.done {
				sc.requeueLocked(f)
			}
		}
		sc.dispatchLocked()
	})
	sc.timers[t] = keep
}

// backoff returns the wait before retry attempt+1: exponential from 50 ms
// up to 2 s with full jitter, or the server's Retry-After when longer.
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	ceil := min(50*time.Millisecond<<min(max(attempt, 0), 6), 2*time.Second)
	d := time.Duration(rand.Int64N(int64(ceil)) + 1)
	return max(d, retryAfter)
}

// completeLocked ends f with err (nil: its result is set) and wakes its
// waiters. Calls still carrying it are cancelled when they carry nothing
// else that is wanted.
func (sc *scheduler) completeLocked(f *flight, err error) {
	if f.done {
		return
	}
	f.done, f.err = true, err
	if f.keyed && sc.flights[f.key] == f {
		delete(sc.flights, f.key)
	}
	sc.unqueueLocked(f)
	for _, c := range f.calls {
		if c.live--; c.live == 0 {
			c.cancel()
		}
	}
	for _, w := range f.waiters {
		if w.pending--; w.pending == 0 {
			close(w.done)
		}
	}
	f.waiters = nil
}

// failQueuedLocked ends every queued flight with err.
func (sc *scheduler) failQueuedLocked(err error) {
	for i := range sc.queue {
		for f := sc.queue[i].head; f != nil; {
			next := f.next
			sc.completeLocked(f, err)
			f = next
		}
	}
}

// closeLocked stops the scheduler: queued and backed-off work ends with
// errClosed; calls in flight run to their end.
func (sc *scheduler) closeLocked() {
	sc.closed = true
	sc.failQueuedLocked(errClosed)
	for t, fs := range sc.timers {
		t.Stop()
		delete(sc.timers, t)
		for _, f := range fs {
			sc.completeLocked(f, errClosed)
		}
	}
}

// countDrainedLocked feeds the drain rate with n inputs done.
func (sc *scheduler) countDrainedLocked(n int) {
	sc.rateInputs += n
	if el := time.Since(sc.rateStart); el >= time.Second {
		now := float64(sc.rateInputs) / el.Seconds()
		if sc.rate == 0 {
			sc.rate = now
		} else {
			sc.rate = 0.5*sc.rate + 0.5*now
		}
		sc.rateStart, sc.rateInputs = time.Now(), 0
	}
}

// drainTime is how long the queue needs to drain q inputs at the measured
// rate: the Retry-After of a refusal, between 1 s and 60 s.
func (sc *scheduler) drainTime(q int) time.Duration {
	if sc.rate <= 0 {
		return time.Second
	}
	d := time.Duration(float64(q) / sc.rate * float64(time.Second))
	return min(max(d, time.Second), time.Minute)
}

// outcomeOf names a call's result for metrics.
func outcomeOf(err error) string {
	var te *tei.Error
	var tr *tei.TransportError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &te):
		return fmt.Sprintf("http_%d", te.Status)
	case errors.As(err, &tr):
		return tr.Kind.String()
	}
	return "error"
}

// makeEntries copies each item out of TEI's answer and shares its
// x-compute-tokens among the inputs by length. An item that is not all
// finite numbers (TEI writes NaN as null) gets a nil entry: it is never
// cached or served. The only item of an answer is not copied: it is all of
// the answer but its brackets, so keeping the answer costs nothing more,
// while one kept item of many would hold all of them.
func makeEntries(c *teiCall) []*entry {
	entries := make([]*entry, len(c.items))
	total := c.resp.ComputeTokens()
	weight, sum := 0, 0
	for _, f := range c.flights {
		weight += f.embed.weight
	}
	for i, it := range c.items {
		if bytes.Contains(it, []byte("null")) {
			continue
		}
		e := &entry{json: it[:len(it):len(it)]}
		if len(c.items) > 1 {
			e.json = append([]byte(nil), it...)
		}
		if total >= 0 && weight > 0 {
			e.tokens = total * c.flights[i].embed.weight / weight
			sum += e.tokens
			if i == len(c.items)-1 {
				e.tokens += total - sum
			}
		}
		entries[i] = e
	}
	return entries
}
