package teisim

import (
	"context"
	"sync"
	"time"
)

// permits is TEI's semaphore of --max-concurrent-requests per-input permits.
// TEI takes them without waiting, so there is no queue here: a request that
// cannot have all of its permits at once is refused.
type permits struct {
	mu   sync.Mutex
	free int
}

// tryAcquire takes n permits if all n are free.
func (p *permits) tryAcquire(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n > p.free {
		return false
	}
	p.free -= n
	return true
}

func (p *permits) release(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free += n
}

// entry is one input waiting for, or in, a backend batch.
type entry struct {
	ctx      context.Context // the request's; a cancelled entry is dropped unrun
	tokens   int
	enqueued time.Time
	started  time.Time // when its batch began
	finished time.Time // when its batch ended
	done     chan struct{}
}

// backend simulates TEI's model backend: workers take batches from one queue,
// filling each up to --max-batch-tokens tokens (and --max-batch-requests
// entries), and each batch costs batchCost + tokens×tokenCost. Inputs of
// concurrent requests share batches, so latency and throughput respond to
// load as TEI's do.
type backend struct {
	maxTokens   int
	maxRequests int // 0: no cap
	batchCost   time.Duration
	tokenCost   time.Duration
	metrics     *metrics

	mu    sync.Mutex
	queue []*entry
	wake  chan struct{} // one pending wake-up; a worker passes it on while work remains
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newBackend(cfg Config, m *metrics) *backend {
	b := &backend{
		maxTokens:   cfg.MaxBatchTokens,
		maxRequests: cfg.MaxBatchRequests,
		batchCost:   cfg.Sim.BatchCost,
		tokenCost:   cfg.Sim.TokenCost,
		metrics:     m,
		wake:        make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	for range cfg.Sim.Workers {
		b.wg.Add(1)
		go b.work()
	}
	return b
}

// close stops the workers and waits for them; entries still queued are
// never run, and their waiters see errStopped.
func (b *backend) close() {
	close(b.stop)
	b.wg.Wait()
}

// run queues one entry per token count and waits until all have run. It
// returns the entries for their timings, or ctx's error if the request goes
// away first, or errStopped if the backend stops.
func (b *backend) run(ctx context.Context, tokenCounts []int) ([]*entry, error) {
	now := time.Now()
	entries := make([]*entry, len(tokenCounts))
	for i, n := range tokenCounts {
		entries[i] = &entry{ctx: ctx, tokens: n, enqueued: now, done: make(chan struct{})}
	}
	b.mu.Lock()
	select {
	case <-b.stop:
		b.mu.Unlock()
		return nil, errStopped
	default:
	}
	b.queue = append(b.queue, entries...)
	b.metrics.queueSize.WithLabelValues().Set(float64(len(b.queue)))
	b.mu.Unlock()
	b.signal()

	for _, e := range entries {
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.stop:
			return nil, errStopped
		}
	}
	return entries, nil
}

func (b *backend) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *backend) work() {
	defer b.wg.Done()
	for {
		batch, tokens := b.next()
		if batch == nil {
			select {
			case <-b.wake:
				continue
			case <-b.stop:
				return
			}
		}
		start := time.Now()
		if cost := b.batchCost + time.Duration(tokens)*b.tokenCost; cost > 0 {
			timer := time.NewTimer(cost)
			select {
			case <-timer.C:
			case <-b.stop:
				timer.Stop()
				return
			}
		}
		end := time.Now()
		for _, e := range batch {
			e.started, e.finished = start, end
			close(e.done)
		}
	}
}

// next takes the next batch off the queue: entries in arrival order while
// they fit the token budget and the request cap. The first entry always
// fits (validation keeps inputs within max_input_length ≤ max-batch-tokens).
// Entries whose request is gone are dropped, as TEI's queue drops them.
func (b *backend) next() ([]*entry, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*entry
	tokens, i := 0, 0
	for ; i < len(b.queue); i++ {
		e := b.queue[i]
		if e.ctx.Err() != nil {
			continue
		}
		if len(batch) > 0 && (tokens+e.tokens > b.maxTokens || (b.maxRequests > 0 && len(batch) == b.maxRequests)) {
			break
		}
		batch = append(batch, e)
		tokens += e.tokens
	}
	if i == 0 {
		return nil, 0
	}
	b.queue = b.queue[i:]
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go
	} else {
		b.signal() // more work: wake another idle worker
	}
	b.metrics.queueSize.WithLabelValues().Set(float64(len(b.queue)))
	if len(batch) > 0 {
		b.metrics.batchSize.WithLabelValues().Observe(float64(len(batch)))
		b.metrics.batchTokens.WithLabelValues().Observe(float64(tokens))
	}
	return batch, tokens
}
