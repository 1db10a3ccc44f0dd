// Package sharedcache is the sidecar's second cache layer: embeddings kept
// in Redis or Valkey (one server, Sentinel or Cluster) and shared by every
// sidecar replica, so that the hit rate does not fall as replicas are added
// and a restart keeps the cache.
//
// Redis never takes a request down. A lookup (Get) is one pipelined round
// trip with its own short deadline; a timeout, an error or an open circuit
// breaker is a miss, returned at once. Stores (Put) are written behind, by
// one goroutine, from a bounded queue that drops rather than blocks.
package sharedcache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrClosed is returned by Flush once the cache is closed.
var ErrClosed = errors.New("sharedcache: closed")

// Cache is the shared cache. A nil *Cache is valid and off: Get misses,
// Put drops, Flush, Ping and Close do nothing. Its methods are safe for
// concurrent use.
type Cache struct {
	cfg     Config // defaults filled
	mode    Mode
	addr    string // the redacted URL
	client  redis.UniversalClient
	breaker *gobreaker.CircuitBreaker[struct{}]
	m       *metrics

	queue      chan write
	stop       chan struct{} // closed by Close: the writer flushes and ends
	writerDone chan struct{} // closed when the writer has ended
	drained    chan struct{} // closed when Close has emptied the queue
	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error

	dropped  atomic.Uint64
	lastErr  atomic.Pointer[lastError]
	flushErr error // the writer's: the latest failed batch since the last Flush
}

// lastError is the latest failed round trip, for Status.
type lastError struct {
	msg string
	at  time.Time
}

// New returns a cache for cfg, its metrics registered on reg (nil: not
// registered), logging breaker changes to log (nil: not logged). It does
// not wait for Redis: connections open in the background and on first
// use, and Ping checks them. An empty cfg.URL turns the layer off: New
// returns a nil *Cache, which is valid.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Cache, error) {
	c, err := newCache(cfg, reg, log)
	if c == nil || err != nil {
		return nil, err
	}
	go c.writeLoop()
	return c, nil
}

// newCache is New without the writer, which tests start themselves.
func newCache(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, nil
	}
	t, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	c := &Cache{
		cfg:        cfg,
		mode:       t.mode,
		addr:       cfg.Redacted(),
		queue:      make(chan write, cfg.QueueSize),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		drained:    make(chan struct{}),
	}
	c.m = newMetrics(func() float64 { return float64(len(c.queue)) })
	if err := c.m.register(reg); err != nil {
		return nil, fmt.Errorf("sharedcache: metrics: %w", err)
	}
	c.breaker = newBreaker(cfg.BreakerFailures, cfg.BreakerOpenFor, c.m, log.With("cache", "redis", "addr", c.addr))
	c.client = newClient(cfg, t)
	return c, nil
}

// key is the Redis key of k: the namespace and k in lowercase hex. No hash
// tag, so a Cluster spreads keys evenly over its slots.
func (c *Cache) key(k [32]byte) string {
	var hx [64]byte
	hex.Encode(hx[:], k[:])
	var b strings.Builder
	b.Grow(len(c.cfg.Namespace) + len(hx))
	b.WriteString(c.cfg.Namespace)
	b.Write(hx[:])
	return b.String()
}

// Get looks keys up in one pipelined round trip (one per node on a
// Cluster, sent in parallel) and returns their values in order, nil where
// missing. It never fails: a timeout (the round trip's Timeout, or the
// caller's ctx, whichever ends first), an error or an open breaker yields
// misses, returned at once without touching the network when the breaker
// is open. A value that fails its frame check is a miss, never served.
//
// The returned slices are the caller's; the cache keeps no reference.
func (c *Cache) Get(ctx context.Context, keys [][32]byte) [][]byte {
	out := make([][]byte, len(keys))
	if c == nil || len(keys) == 0 || c.closed.Load() {
		return out
	}
	if ctx.Err() != nil {
		c.m.requests[opGet][outcomeCanceled].Inc()
		c.m.keys[keyMiss].Add(float64(len(keys)))
		return out
	}
	start := time.Now()
	var malformed int
	_, err := c.breaker.Execute(func() (struct{}, error) {
		var err error
		malformed, err = c.get(ctx, keys, out)
		return struct{}{}, err
	})
	c.finish(opGet, start, err)

	hits := 0
	for _, v := range out {
		if v != nil {
			hits++
		}
	}
	c.m.keys[keyHit].Add(float64(hits))
	c.m.keys[keyMalformed].Add(float64(malformed))
	c.m.keys[keyMiss].Add(float64(len(keys) - hits - malformed))
	return out
}

// get is Get's round trip, filling out. It reports how many values were
// malformed, and a *tripError when the round trip failed.
func (c *Cache) get(parent context.Context, keys [][32]byte, out [][]byte) (malformed int, err error) {
	ctx, cancel := context.WithTimeout(parent, c.cfg.Timeout)
	defer cancel()
	pipe := c.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, c.key(k))
	}
	_, _ = pipe.Exec(ctx) // each command carries its own result

	var transport, reply error
	replies := 0
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		switch {
		case err == nil:
			if v, ok := unframe(b); ok {
				out[i] = v
			} else {
				malformed++
			}
		case errors.Is(err, redis.Nil):
		case isReply(err):
			reply = err
			replies++
		default:
			transport = err
		}
	}
	switch {
	case transport != nil:
		return malformed, failed(parent, transport, true)
	case replies == len(keys):
		// Every key refused (LOADING, NOAUTH, CLUSTERDOWN): Redis is of
		// no use now, however quickly it says so.
		return malformed, failed(parent, reply, true)
	case replies > 0:
		// Some keys hold something else (WRONGTYPE): their problem, not
		// Redis's.
		return malformed, failed(parent, reply, false)
	}
	return malformed, nil
}

// finish counts a round trip that began at start and ended with err.
func (c *Cache) finish(o op, start time.Time, err error) {
	if refused(err) {
		c.m.requests[o][outcomeBreakerOpen].Inc()
		return
	}
	c.m.duration[o].Observe(time.Since(start).Seconds())
	var te *tripError
	if !errors.As(err, &te) {
		c.m.requests[o][outcomeOK].Inc()
		return
	}
	c.m.requests[o][te.outcome].Inc()
	if te.outcome != outcomeCanceled {
		c.lastErr.Store(&lastError{msg: opNames[o] + ": " + te.Error(), at: time.Now()})
	}
}

// Put stores value under key, behind the caller's back: it queues the
// write and returns at once. When the queue is full the write is dropped
// and counted. Put copies value before it returns, so the caller keeps
// its slice and may change it. An empty value is not stored.
func (c *Cache) Put(key [32]byte, value []byte) {
	if c == nil {
		return
	}
	switch {
	case c.closed.Load():
		c.drop(dropClosed, 1)
		return
	case len(value) == 0:
		c.drop(dropEmpty, 1)
		return
	}
	select {
	case c.queue <- write{key: c.key(key), value: frame(value)}:
	default:
		c.drop(dropQueueFull, 1)
	}
}

// Flush waits until every Put made before it has been written (or
// dropped), for tests and orderly shutdowns. It returns the latest write
// error since the previous Flush, ctx's error, or ErrClosed.
func (c *Cache) Flush(ctx context.Context) error {
	if c == nil {
		return nil
	}
	if c.closed.Load() {
		return ErrClosed
	}
	done := make(chan error, 1)
	select {
	case c.queue <- write{flushed: done}:
	case <-c.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-c.drained:
		// Close answered every marker it found; one queued after that
		// is never answered.
		select {
		case err := <-done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ping checks that Redis answers (every master, on a Cluster), for the
// startup log. It bypasses the breaker and the metrics.
func (c *Cache) Ping(ctx context.Context) error {
	if c == nil {
		return nil
	}
	var err error
	if cc, ok := c.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() })
	} else {
		err = c.client.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("sharedcache: ping %s: %w", c.addr, err)
	}
	return nil
}

// Close stops the writer, letting it write what is queued for up to
// about a second, then closes the connections. Writes left over are
// dropped and counted (a Put racing Close may be lost uncounted). No
// goroutine of the cache outlives it. Calling it again does nothing.
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.stop)
		<-c.writerDone
		c.dropLeftovers()
		close(c.drained)
		c.closeErr = c.client.Close()
	})
	return c.closeErr
}

// Status is the cache's state for /status.
type Status struct {
	// Address is the URL with passwords hidden.
	Address string `json:"address"`
	// Mode is single, sentinel, cluster, or off.
	Mode      Mode   `json:"mode"`
	Namespace string `json:"namespace,omitempty"`
	// Breaker is closed, half-open or open.
	Breaker string `json:"breaker,omitempty"`
	// QueueDepth of QueueSize writes wait for the writer.
	QueueDepth int `json:"queue_depth"`
	QueueSize  int `json:"queue_size"`
	// Dropped counts writes not stored, for any reason, since New.
	Dropped uint64 `json:"dropped"`
	// LastError is the latest failed round trip, and LastErrorAt its time.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status reports the cache's state. A nil cache reports mode off.
func (c *Cache) Status() Status {
	if c == nil {
		return Status{Mode: ModeOff}
	}
	s := Status{
		Address:    c.addr,
		Mode:       c.mode,
		Namespace:  c.cfg.Namespace,
		Breaker:    c.breaker.State().String(),
		QueueDepth: len(c.queue),
		QueueSize:  cap(c.queue),
		Dropped:    c.dropped.Load(),
	}
	if e := c.lastErr.Load(); e != nil {
		s.LastError, s.LastErrorAt = e.msg, e.at
	}
	return s
}

// drop counts n writes not stored.
func (c *Cache) drop(r dropReason, n int) {
	c.m.dropped[r].Add(float64(n))
	c.dropped.Add(uint64(n))
}
