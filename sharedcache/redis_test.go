package sharedcache

// Integration tests against real redis-server processes (tests/redistest):
// the faults that peers shipped bugs for, reproduced for real.

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/tei-sidecar/tei-sidecar/tests/redistest"
)

// behaviourBound is how long a lookup may take when Redis is dead or
// stalled: far more than any Timeout here plus scheduling noise, far less
// than the hang it guards against. It is a check of behaviour, not speed.
const behaviourBound = time.Second

// putAll stores vector(i, dim) under keys[i] and waits for the writes.
func putAll(t testing.TB, c *Cache, keys [][32]byte, dim int) {
	t.Helper()
	for i, k := range keys {
		c.Put(k, vector(i, dim))
	}
	flush(t, c)
}

// checkHits fails unless Get returns vector(i, dim) for every keys[i].
func checkHits(t testing.TB, c *Cache, keys [][32]byte, dim int) {
	t.Helper()
	got := c.Get(context.Background(), keys)
	for i := range keys {
		if !bytes.Equal(got[i], vector(i, dim)) {
			t.Fatalf("key %d: got %d bytes, want vector %d (%d bytes)", i, len(got[i]), i, len(vector(i, dim)))
		}
	}
}

// timedGet is one lookup with no deadline of the caller's, so only the
// cache's own Timeout can end it.
func timedGet(t testing.TB, c *Cache, keys [][32]byte) time.Duration {
	t.Helper()
	start := time.Now()
	got := c.Get(context.Background(), keys)
	took := time.Since(start)
	for i, v := range got {
		if v != nil {
			t.Fatalf("key %d hit while Redis is down", i)
		}
	}
	return took
}

func TestRedisRoundTrip(t *testing.T) {
	s := redistest.Start(t)
	keys := testKeys(32)
	c, _ := newTestCache(t, Config{URL: s.URL(), TTL: time.Hour, Timeout: generous})
	putAll(t, c, keys, 1024)
	checkHits(t, c, keys, 1024)
	if got := c.Get(context.Background(), [][32]byte{testKey(1000)})[0]; got != nil {
		t.Errorf("a key never put = %d bytes", len(got))
	}

	pttl, err := s.CLI("pttl", c.key(keys[0]))
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := strconv.Atoi(pttl); err != nil || ms <= 0 || ms > int(time.Hour/time.Millisecond) {
		t.Errorf("PTTL = %q, want up to an hour", pttl)
	}

	// Another namespace, without a TTL: its own keys, never expiring.
	other, _ := newTestCache(t, Config{URL: s.URL(), Namespace: "other:v1:", Timeout: generous})
	if got := other.Get(context.Background(), keys); got[0] != nil {
		t.Errorf("namespace other:v1: read the default namespace's entry")
	}
	other.Put(keys[0], []byte("[1]"))
	flush(t, other)
	if pttl, err := s.CLI("pttl", "other:v1:"+c.key(keys[0])[len(DefaultNamespace):]); err != nil || pttl != "-1" {
		t.Errorf("PTTL without a TTL = %q, %v; want -1 (no expiry)", pttl, err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestRedisClusterLookupAcrossSlots checks that one Get of keys spread
// over every node of a 3-master Cluster answers them all. A peer sent MGET
// across slots and got CROSSSLOT for every multi-key lookup.
func TestRedisClusterLookupAcrossSlots(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	c, _ := newTestCache(t, Config{URL: "redis+cluster://" + strings.Join(cluster.Addrs(), ","), Timeout: generous})
	if s := c.Status(); s.Mode != ModeCluster {
		t.Fatalf("mode = %s, want cluster", s.Mode)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	keys := testKeys(32)
	putAll(t, c, keys, 1024)

	// The keys landed on every node, so they span slots on all three.
	total := 0
	for _, node := range cluster.Nodes {
		out, err := node.CLI("dbsize")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(out)
		if n == 0 {
			t.Errorf("node %s holds none of the 32 keys", node.Addr)
		}
		total += n
	}
	if total != len(keys) {
		t.Errorf("the nodes hold %d keys, want %d", total, len(keys))
	}
	// What MGET would have got.
	args := []string{"mget"}
	for _, k := range keys {
		args = append(args, c.key(k))
	}
	if out, _ := cluster.Nodes[0].CLI(args...); !strings.Contains(out, "CROSSSLOT") {
		t.Errorf("MGET of the keys answered %.80q, want CROSSSLOT (the test's keys no longer span slots)", out)
	}

	before := requests(t, c, opGet, outcomeOK)
	checkHits(t, c, keys, 1024)
	if n := requests(t, c, opGet, outcomeOK) - before; n != 1 {
		t.Errorf("the lookup counted %v round trips, want 1", n)
	}
	if s := c.Status(); s.LastError != "" {
		t.Errorf("LastError = %q", s.LastError)
	}
}

// TestRedisKilled checks a dead server: lookups miss at once, the breaker
// opens, and then lookups do not touch the network.
func TestRedisKilled(t *testing.T) {
	s := redistest.Start(t)
	keys := testKeys(4)
	c, _ := newTestCache(t, Config{URL: s.URL(), BreakerFailures: 3, BreakerOpenFor: time.Hour})
	putAll(t, c, keys, 16)
	checkHits(t, c, keys, 16)
	s.Kill()

	for range 3 {
		if took := timedGet(t, c, keys); took > behaviourBound {
			t.Errorf("a lookup against a dead server took %s", took)
		}
	}
	if got := c.Status().Breaker; got != "open" {
		t.Fatalf("breaker = %s after 3 failed lookups, want open", got)
	}
	trips := value(t, c.m.duration[opGet])
	for range 100 {
		timedGet(t, c, keys)
	}
	if n := value(t, c.m.duration[opGet]) - trips; n != 0 {
		t.Errorf("%v lookups reached the network with the breaker open", n)
	}
	if n := requests(t, c, opGet, outcomeBreakerOpen); n != 100 {
		t.Errorf("breaker_open lookups = %v, want 100", n)
	}
}

// TestRedisStalled checks a server that accepts but never answers (SIGSTOP,
// as a black-holed node): each lookup waits for its Timeout and no longer,
// even when the caller sets no deadline. A peer applied no timeout there,
// and requests hung far past their budget.
func TestRedisStalled(t *testing.T) {
	s := redistest.Start(t)
	keys := testKeys(4)
	const timeout = 100 * time.Millisecond
	// The socket timeouts follow WriteTimeout: set far past behaviourBound,
	// a lookup that ignored its own deadline would show. BreakerOpenFor
	// only has to outlast the quick lookups made while open.
	c, _ := newTestCache(t, Config{URL: s.URL(), Timeout: timeout, WriteTimeout: time.Minute, BreakerFailures: 3, BreakerOpenFor: 2 * time.Second})
	putAll(t, c, keys, 16)
	checkHits(t, c, keys, 16)
	s.Pause()
	t.Cleanup(s.Kill) // a stopped process ignores everything but SIGKILL

	for i := range 3 {
		took := timedGet(t, c, keys)
		if took < timeout || took > behaviourBound {
			t.Errorf("lookup %d against a stalled server took %s, want its timeout %s (and well under %s)", i, took, timeout, behaviourBound)
		}
	}
	if n := requests(t, c, opGet, outcomeTimeout); n != 3 {
		t.Errorf("timed-out lookups = %v, want 3", n)
	}
	if got := c.Status().Breaker; got != "open" {
		t.Fatalf("breaker = %s after 3 timeouts, want open", got)
	}
	trips := value(t, c.m.duration[opGet])
	for range 10 {
		timedGet(t, c, keys)
	}
	if n := value(t, c.m.duration[opGet]) - trips; n != 0 {
		t.Errorf("%v lookups reached the stalled server with the breaker open", n)
	}

	s.Resume()
	waitFor(t, "the breaker to close", func() bool {
		c.Get(context.Background(), keys)
		return c.Status().Breaker == "closed"
	})
	failures := requests(t, c, opGet, outcomeTimeout) + requests(t, c, opGet, outcomeError)
	for range 20 {
		checkHits(t, c, keys, 16)
	}
	if n := requests(t, c, opGet, outcomeTimeout) + requests(t, c, opGet, outcomeError) - failures; n != 0 {
		t.Errorf("%v lookups failed after recovery", n)
	}
}

// TestRedisRestart checks that a restarted server leaves no dead pooled
// connection behind: once it is back, no lookup or write fails.
func TestRedisRestart(t *testing.T) {
	t.Run("while idle", func(t *testing.T) {
		s := redistest.Start(t)
		keys := testKeys(8)
		c, _ := newTestCache(t, Config{URL: s.URL(), Timeout: generous, MinIdleConns: 4, BreakerFailures: 1, BreakerOpenFor: time.Hour})
		putAll(t, c, keys, 16)
		warmPool(t, c, keys, 8)
		s.Restart() // every pooled connection is now dead

		putAll(t, c, keys, 16)
		for range 20 {
			checkHits(t, c, keys, 16)
		}
		checkNoFailures(t, c)
	})
	t.Run("after an outage", func(t *testing.T) {
		s := redistest.Start(t)
		keys := testKeys(8)
		c, _ := newTestCache(t, Config{URL: s.URL(), MinIdleConns: 4, BreakerFailures: 2, BreakerOpenFor: 100 * time.Millisecond})
		putAll(t, c, keys, 16)
		warmPool(t, c, keys, 8)
		s.Kill()
		tripBreaker(t, c, keys)
		s.Restart()
		waitFor(t, "the breaker to close", func() bool {
			c.Get(context.Background(), keys)
			return c.Status().Breaker == "closed"
		})

		before := map[outcome]float64{}
		for _, o := range []outcome{outcomeTimeout, outcomeError, outcomeBreakerOpen} {
			before[o] = requests(t, c, opGet, o) + requests(t, c, opSet, o)
		}
		putAll(t, c, keys, 16)
		for range 20 {
			checkHits(t, c, keys, 16)
		}
		for o, n := range before {
			if d := requests(t, c, opGet, o) + requests(t, c, opSet, o) - n; d != 0 {
				t.Errorf("%v round trips ended %s after recovery", d, outcomeNames[o])
			}
		}
	})
}

// warmPool runs n lookups at once, so the pool holds several connections.
func warmPool(t testing.TB, c *Cache, keys [][32]byte, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { c.Get(context.Background(), keys) })
	}
	wg.Wait()
}

// checkNoFailures fails if any round trip of c ever failed.
func checkNoFailures(t testing.TB, c *Cache) {
	t.Helper()
	for o := range nOps {
		for _, r := range []outcome{outcomeTimeout, outcomeError, outcomeBreakerOpen} {
			if n := requests(t, c, o, r); n != 0 {
				t.Errorf("%v %s round trips ended %s", n, opNames[o], outcomeNames[r])
			}
		}
	}
	if s := c.Status(); s.LastError != "" || s.Dropped != 0 {
		t.Errorf("Status = %+v, want no error and nothing dropped", s)
	}
}

func TestRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "teimaster")
	c, _ := newTestCache(t, Config{URL: "redis+sentinel://" + sentinel.Addr + "/teimaster/0", Timeout: generous})
	if s := c.Status(); s.Mode != ModeSentinel {
		t.Errorf("mode = %s, want sentinel", s.Mode)
	}
	keys := testKeys(4)
	putAll(t, c, keys, 16)
	checkHits(t, c, keys, 16)
	if out, err := master.CLI("exists", c.key(keys[0])); err != nil || out != "1" {
		t.Errorf("EXISTS on the master = %q, %v; want 1", out, err)
	}
	checkNoFailures(t, c)
}

// TestRedisCloseLeavesNoGoroutine checks Close against real servers, with
// idle connections kept open and, on a Cluster, a pool per node.
func TestRedisCloseLeavesNoGoroutine(t *testing.T) {
	single := redistest.Start(t)
	cluster := redistest.StartCluster(t, 3)
	for _, url := range []string{single.URL(), "redis+cluster://" + strings.Join(cluster.Addrs(), ",")} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			c, err := New(Config{URL: url, MinIdleConns: 2, Timeout: generous}, prometheus.NewRegistry(), testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			keys := testKeys(16)
			for i, k := range keys {
				c.Put(k, vector(i, 16))
			}
			flush(t, c)
			warmPool(t, c, keys, 4)
			for i := range 50 {
				c.Put(testKey(100+i), vector(i, 16))
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			goleak.VerifyNone(t, ignore)
			if s := c.Status(); s.Dropped != 0 {
				t.Errorf("Close dropped %d queued writes with Redis up", s.Dropped)
			}
		})
	}
}
