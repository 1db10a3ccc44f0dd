package teisim

import (
	"context"
	"sync"
	"time"
)

// permits is TEI's semaphore of --max-concurrent-requests per-input permits.
// TEI takes them without waiting, so there is no queue here: an input that
// cannot have its permit is refused.
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

// tryAcquireUpTo takes as many of n permits as are free and says how many,
// as n try_acquire calls in a row do.
func (p *permits) tryAcquireUpTo(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := min(n, p.free)
	p.free -= got
	return got
}

func (p *permits) release(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free += n
}

// item is one input bound for the backend.
type item struct {
	tokens int
	// poison makes the batch it lands in fail (Fault.ErrorMarker).
	poison bool
}

// entry is one input waiting for, or in, a backend batch.
type entry struct {
	item
	ctx      context.Context // the request's; a cancelled entry is dropped unrun
	enqueued time.Time
	started  time.Time // when its batch began
	finished time.Time // when its batch ended
	err      *apiError // the batch's failure; every entry of a failed batch shares it
	done     chan struct{}
}

// probe is a /health check waiting for a backend worker.
type probe struct {
	ctx     context.Context
	healthy bool
	done    chan struct{}
}

// Backend kinds accepted by --sim-backend.
const (
	// BackendCUDA is TEI's GPU backend (candle with flash attention): no cap
	// on batch entries beyond --max-batch-requests, and no padding.
	BackendCUDA = "cuda"
	// BackendCandle is TEI's CPU candle backend: at most 4 entries per
	// batch, padded to the longest.
	BackendCandle = "candle"
	// BackendORT is TEI's ONNX Runtime backend (the CPU image when the model
	// has ONNX files): at most 8 entries per batch, padded to the longest.
	BackendORT = "ort"
)

// BackendBatchCap is the entry cap a backend kind forces on every batch
// (TEI's Backend::max_batch_size, which overrides --max-batch-requests), 0
// for none.
func BackendBatchCap(kind string) int {
	switch kind {
	case BackendCandle:
		return 4
	case BackendORT:
		return 8
	}
	return 0
}

// backend simulates TEI's model backend: workers take batches from one queue,
// filling each up to --max-batch-tokens tokens and the entry cap (the
// backend's own, else --max-batch-requests), and each batch costs batchCost +
// tokens×tokenCost, where a padded (CPU) backend pays for every entry at the
// longest entry's length. Inputs of concurrent requests share batches, so
// latency and throughput respond to load as TEI's do. /health probes wait for
// a free worker ahead of the next batch, as TEI's health command waits on its
// backend thread behind the batch in progress.
type backend struct {
	maxTokens   int
	maxRequests int // 0: no cap
	padded      bool
	batchCost   time.Duration
	tokenCost   time.Duration
	metrics     *metrics
	fault       func() Fault

	mu      sync.Mutex
	queue   []*entry
	probes  []*probe
	healthy bool          // whether the last batch or probe succeeded, as TEI's health watch
	held    bool          // HoldBatches: workers take nothing new
	wake    chan struct{} // one pending wake-up; a worker passes it on while work remains
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newBackend(cfg Config, m *metrics, fault func() Fault) *backend {
	b := &backend{
		maxTokens:   cfg.MaxBatchTokens,
		maxRequests: cfg.batchRequests(),
		padded:      cfg.Sim.Backend == BackendCandle || cfg.Sim.Backend == BackendORT,
		batchCost:   cfg.Sim.BatchCost,
		tokenCost:   cfg.Sim.TokenCost,
		metrics:     m,
		fault:       fault,
		healthy:     true, // TEI's warm-up ran a batch before the port opened
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

// run queues one entry per item and waits until all have run. It returns
// the entries for their timings and errors, or ctx's error if the request
// goes away first, or errStopped if the backend stops.
func (b *backend) run(ctx context.Context, items []item) ([]*entry, error) {
	now := time.Now()
	entries := make([]*entry, len(items))
	for i, it := range items {
		entries[i] = &entry{item: it, ctx: ctx, enqueued: now, done: make(chan struct{})}
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

// health waits for a worker to take a probe and reports the backend's
// health: at once while the last batch succeeded, else after a one-token
// forward pass, as TEI's Backend::health does.
func (b *backend) health(ctx context.Context) (bool, error) {
	p := &probe{ctx: ctx, done: make(chan struct{})}
	b.mu.Lock()
	select {
	case <-b.stop:
		b.mu.Unlock()
		return false, errStopped
	default:
	}
	b.probes = append(b.probes, p)
	b.mu.Unlock()
	b.signal()
	select {
	case <-p.done:
		return p.healthy, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-b.stop:
		return false, errStopped
	}
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
		p, batch, tokens := b.next()
		switch {
		case p != nil:
			if !b.runProbe(p) {
				return
			}
		case batch != nil:
			if !b.runBatch(batch, tokens) {
				return
			}
		default:
			select {
			case <-b.wake:
			case <-b.stop:
				return
			}
		}
	}
}

// hold stops workers from taking new work until the returned release runs.
func (b *backend) hold() (release func()) {
	b.mu.Lock()
	b.held = true
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.held = false
			b.mu.Unlock()
			b.signal()
		})
	}
}

// backlog counts the inputs queued for a batch and the health checks
// waiting for a worker.
func (b *backend) backlog() (inputs, healthChecks int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue), len(b.probes)
}

// spend waits d, or reports false if the backend stops first.
func (b *backend) spend(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.stop:
		return false
	}
}

// runBatch spends the batch's cost, then fails all of it or none: a poisoned
// entry or, with Fault.ErrorPerBatch, the dice fail every entry with the
// same error, as one failed forward pass fails every request in TEI's batch.
func (b *backend) runBatch(batch []*entry, tokens int) bool {
	start := time.Now()
	if !b.spend(b.batchCost + time.Duration(tokens)*b.tokenCost) {
		return false
	}
	f := b.fault()
	var failure *apiError
	for _, e := range batch {
		if e.poison {
			failure = injectedError(f.ErrorStatus)
			break
		}
	}
	if failure == nil && f.ErrorPerBatch {
		failure = rollFault(f)
	}
	b.mu.Lock()
	b.healthy = failure == nil
	b.mu.Unlock()
	end := time.Now()
	for _, e := range batch {
		e.started, e.finished, e.err = start, end, failure
		close(e.done)
	}
	return true
}

// runProbe answers a health probe: healthy at once after a good batch,
// else a one-token forward pass that can fail like any batch.
func (b *backend) runProbe(p *probe) bool {
	b.mu.Lock()
	healthy := b.healthy
	b.mu.Unlock()
	if !healthy {
		if !b.spend(b.batchCost + b.tokenCost) {
			return false
		}
		f := b.fault()
		healthy = !f.ErrorPerBatch || rollFault(f) == nil
		b.mu.Lock()
		b.healthy = healthy
		b.mu.Unlock()
	}
	p.healthy = healthy
	close(p.done)
	return true
}

// next takes the next piece of work: a waiting probe first, else a batch of
// entries in arrival order while they fit the token budget (for a padded
// backend, entries × the longest entry) and the entry cap. The first entry
// always fits (validation keeps inputs within max_input_length ≤
// max-batch-tokens). Entries whose request is gone are dropped and counted,
// as TEI's queue does. tokens is what the batch costs.
func (b *backend) next() (p *probe, batch []*entry, tokens int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held {
		return nil, nil, 0
	}
	for len(b.probes) > 0 {
		p, b.probes = b.probes[0], b.probes[1:]
		if p.ctx.Err() == nil {
			if len(b.probes) > 0 || len(b.queue) > 0 {
				b.signal()
			}
			return p, nil, 0
		}
	}
	sum, longest, i := 0, 0, 0
	for ; i < len(b.queue); i++ {
		e := b.queue[i]
		if e.ctx.Err() != nil {
			b.metrics.requestFailure.WithLabelValues("dropped").Inc()
			continue
		}
		size := sum + e.tokens
		if b.padded {
			size = max(longest, e.tokens) * (len(batch) + 1)
		}
		if len(batch) > 0 && size > b.maxTokens {
			break
		}
		batch = append(batch, e)
		sum += e.tokens
		longest = max(longest, e.tokens)
		if b.maxRequests > 0 && len(batch) == b.maxRequests {
			i++
			break
		}
	}
	if i == 0 {
		return nil, nil, 0
	}
	b.queue = b.queue[i:]
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go
	} else {
		b.signal() // more work: wake another idle worker
	}
	b.metrics.queueSize.WithLabelValues().Set(float64(len(b.queue)))
	if len(batch) == 0 {
		return nil, nil, 0
	}
	b.metrics.batchSize.WithLabelValues().Observe(float64(len(batch)))
	b.metrics.batchTokens.WithLabelValues().Observe(float64(sum))
	tokens = sum
	if b.padded {
		tokens = longest * len(batch)
	}
	return nil, batch, tokens
}
