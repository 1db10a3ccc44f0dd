package sharedcache

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// miniURL starts a miniredis, stopped when the test ends, and returns it
// with its URL.
func miniURL(t *testing.T) (*miniredis.Miniredis, string) {
	t.Helper()
	m := miniredis.RunT(t)
	return m, "redis://" + m.Addr()
}

// generous is a lookup deadline no healthy in-process server misses, even
// under the race detector on a loaded machine.
const generous = 5 * time.Second

func TestGetPutRoundTrip(t *testing.T) {
	_, url := miniURL(t)
	c, _ := newTestCache(t, Config{URL: url, Timeout: generous})
	keys := testKeys(4)
	for i := range 3 {
		c.Put(keys[i], vector(i, 8))
	}
	flush(t, c)

	got := c.Get(context.Background(), keys)
	if len(got) != len(keys) {
		t.Fatalf("Get returned %d values for %d keys", len(got), len(keys))
	}
	for i := range 3 {
		if !bytes.Equal(got[i], vector(i, 8)) {
			t.Errorf("key %d = %q, want %q", i, got[i], vector(i, 8))
		}
	}
	if got[3] != nil {
		t.Errorf("key never put = %q, want nil", got[3])
	}
	if n := requests(t, c, opGet, outcomeOK); n != 1 {
		t.Errorf("get ok round trips = %v, want 1", n)
	}
	for r, want := range map[keyResult]float64{keyHit: 3, keyMiss: 1, keyMalformed: 0} {
		if n := value(t, c.m.keys[r]); n != want {
			t.Errorf("keys %s = %v, want %v", keyResultNames[r], n, want)
		}
	}
	if got := c.Get(context.Background(), nil); len(got) != 0 {
		t.Errorf("Get(nil) = %v", got)
	}
}

func TestKeyLayoutAndNamespace(t *testing.T) {
	m, url := miniURL(t)
	k := testKey(1)
	tests := []struct {
		namespace, want string
	}{
		{"", DefaultNamespace + hex.EncodeToString(k[:])},
		{"tenant-a:", "tenant-a:" + hex.EncodeToString(k[:])},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			m.FlushAll()
			c, _ := newTestCache(t, Config{URL: url, Namespace: tt.namespace, Timeout: generous})
			c.Put(k, []byte("[1]"))
			flush(t, c)
			if keys := m.Keys(); len(keys) != 1 || keys[0] != tt.want {
				t.Errorf("Redis keys = %q, want [%q]", keys, tt.want)
			}
		})
	}

	// Two namespaces on one server never see each other's entries.
	a, _ := newTestCache(t, Config{URL: url, Namespace: "a:", Timeout: generous})
	b, _ := newTestCache(t, Config{URL: url, Namespace: "b:", Timeout: generous})
	a.Put(k, []byte("[1]"))
	flush(t, a)
	if v := b.Get(context.Background(), [][32]byte{k})[0]; v != nil {
		t.Errorf("namespace b: read namespace a's entry %q", v)
	}
	if v := a.Get(context.Background(), [][32]byte{k})[0]; string(v) != "[1]" {
		t.Errorf("namespace a: read %q, want [1]", v)
	}
}

func TestTTL(t *testing.T) {
	m, url := miniURL(t)
	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"no expiry", 0},
		{"one hour", time.Hour},
		{"1500ms", 1500 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCache(t, Config{URL: url, TTL: tt.ttl, Timeout: generous})
			c.Put(testKey(i), []byte("[1]"))
			flush(t, c)
			if got := m.TTL(c.key(testKey(i))); got != tt.ttl {
				t.Errorf("TTL = %s, want %s", got, tt.ttl)
			}
		})
	}
}

// TestMalformedValuesAreMisses checks that whatever else lies under a key
// is a miss, never an answer. Peers served nulls and garbage from bad round
// trips; this layer's values go to clients unchecked.
func TestMalformedValuesAreMisses(t *testing.T) {
	m, url := miniURL(t)
	c, _ := newTestCache(t, Config{URL: url, Timeout: generous})
	good := frame([]byte("[0.5,0.25]"))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-2] ^= 1
	wrongVersion := bytes.Clone(good)
	wrongVersion[0] = 2
	tests := []struct {
		name, raw string
	}{
		{"empty", ""},
		{"header only", string(frame(nil))},
		{"one byte", "\x01"},
		{"truncated", string(good[:len(good)-1])},
		{"corrupted", string(flipped)},
		{"other version", string(wrongVersion)},
		{"plain JSON", "[0.5,0.25]"},
		{"null", "null"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := testKey(100 + i)
			if err := m.Set(c.key(k), tt.raw); err != nil {
				t.Fatal(err)
			}
			before := value(t, c.m.keys[keyMalformed])
			if v := c.Get(context.Background(), [][32]byte{k})[0]; v != nil {
				t.Errorf("Get served %q", v)
			}
			if n := value(t, c.m.keys[keyMalformed]) - before; n != 1 {
				t.Errorf("malformed keys counted %v, want 1", n)
			}
		})
	}
	t.Run("wrong type", func(t *testing.T) {
		k, other := testKey(200), testKey(201)
		if _, err := m.Lpush(c.key(k), "x"); err != nil {
			t.Fatal(err)
		}
		c.Put(other, []byte("[2]"))
		flush(t, c)
		got := c.Get(context.Background(), [][32]byte{k, other})
		if got[0] != nil || string(got[1]) != "[2]" {
			t.Errorf("Get = %q, want [nil [2]]", got)
		}
		if c.Status().Breaker != "closed" {
			t.Errorf("one key of the wrong type moved the breaker to %s", c.Status().Breaker)
		}
	})
}

// TestErrorReplies checks which error replies count against Redis: a
// lookup refused for every key does (Redis is of no use), writes refused
// (OOM under noeviction) do not, since lookups may still work.
func TestErrorReplies(t *testing.T) {
	tests := []struct {
		name        string
		lookups     bool
		wantBreaker string
	}{
		{"lookups refused", true, "open"},
		{"writes refused", false, "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, url := miniURL(t)
			c, _ := newTestCache(t, Config{URL: url, Timeout: generous, BreakerFailures: 3, BreakerOpenFor: time.Hour})
			// Open the connections first: the error applies to HELLO too.
			c.Get(context.Background(), testKeys(1))
			m.SetError("LOADING Redis is loading the dataset in memory")
			for i := range 5 {
				if tt.lookups {
					c.Get(context.Background(), testKeys(2))
				} else {
					c.Put(testKey(i), []byte("[1]"))
					ctx, cancel := context.WithTimeout(context.Background(), generous)
					if err := c.Flush(ctx); err == nil || !strings.Contains(err.Error(), "LOADING") {
						t.Errorf("Flush = %v, want the LOADING reply", err)
					}
					cancel()
				}
			}
			if got := c.Status().Breaker; got != tt.wantBreaker {
				t.Errorf("breaker = %s, want %s", got, tt.wantBreaker)
			}
			if !strings.Contains(c.Status().LastError, "LOADING") {
				t.Errorf("LastError = %q, want the LOADING reply", c.Status().LastError)
			}
			if !tt.lookups {
				if n := value(t, c.m.dropped[dropFailed]); n != 5 {
					t.Errorf("dropped failed = %v, want 5", n)
				}
			}
		})
	}
}

// TestServerDownOpensBreaker checks that lookups against a server that is
// gone are misses, that the breaker opens after BreakerFailures of them,
// and that it then answers without a round trip (no latency observed).
func TestServerDownOpensBreaker(t *testing.T) {
	m, url := miniURL(t)
	c, _ := newTestCache(t, Config{URL: url, Timeout: generous, BreakerFailures: 3, BreakerOpenFor: time.Hour})
	keys := testKeys(2)
	c.Put(keys[0], []byte("[1]"))
	flush(t, c)
	m.Close()

	tripBreaker(t, c, keys)
	if n := requests(t, c, opGet, outcomeError); n != 3 {
		t.Errorf("failed lookups = %v, want 3", n)
	}
	trips := value(t, c.m.duration[opGet])
	for range 10 {
		if got := c.Get(context.Background(), keys); got[0] != nil || got[1] != nil {
			t.Fatalf("Get = %q with the breaker open", got)
		}
	}
	if n := value(t, c.m.duration[opGet]) - trips; n != 0 {
		t.Errorf("%v lookups reached the network with the breaker open", n)
	}
	if n := requests(t, c, opGet, outcomeBreakerOpen); n != 10 {
		t.Errorf("breaker_open lookups = %v, want 10", n)
	}
	if v := value(t, c.m.breaker); v != 2 {
		t.Errorf("breaker state gauge = %v, want 2 (open)", v)
	}
	if s := c.Status(); !strings.Contains(s.LastError, "refused") || s.LastErrorAt.IsZero() {
		t.Errorf("Status = %+v, want the refused connection as last error", s)
	}

	// Writes are dropped, counted, while the breaker is open.
	c.Put(keys[1], []byte("[2]"))
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if err := c.Flush(ctx); err == nil {
		t.Error("Flush = nil with the breaker open")
	}
	if n := value(t, c.m.dropped[dropBreakerOpen]); n != 1 {
		t.Errorf("dropped breaker_open = %v, want 1", n)
	}
}

func TestBreakerRecovers(t *testing.T) {
	m, url := miniURL(t)
	c, _ := newTestCache(t, Config{URL: url, Timeout: generous, BreakerFailures: 2, BreakerOpenFor: 50 * time.Millisecond})
	keys := testKeys(1)
	c.Put(keys[0], []byte("[1]"))
	flush(t, c)
	m.Close()
	tripBreaker(t, c, keys)
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the breaker to close", func() bool {
		c.Get(context.Background(), keys)
		return c.Status().Breaker == "closed"
	})
	if v := c.Get(context.Background(), keys)[0]; string(v) != "[1]" {
		t.Errorf("after recovery Get = %q, want [1]", v)
	}
	if v := value(t, c.m.breaker); v != 0 {
		t.Errorf("breaker state gauge = %v, want 0 (closed)", v)
	}
	if n := value(t, c.m.transitions.WithLabelValues("half-open", "closed")); n < 1 {
		t.Errorf("half-open→closed transitions = %v, want at least 1", n)
	}
}

// TestCanceledCallerIsNotRedisFault checks that a caller who gave up gets
// misses without a round trip and without moving the breaker.
func TestCanceledCallerIsNotRedisFault(t *testing.T) {
	_, url := miniURL(t)
	c, _ := newTestCache(t, Config{URL: url, BreakerFailures: 1, BreakerOpenFor: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		if got := c.Get(ctx, testKeys(2)); got[0] != nil || got[1] != nil {
			t.Errorf("Get = %q", got)
		}
	}
	if n := requests(t, c, opGet, outcomeCanceled); n != 3 {
		t.Errorf("canceled lookups = %v, want 3", n)
	}
	if n := value(t, c.m.duration[opGet]); n != 0 {
		t.Errorf("%v canceled lookups reached the network", n)
	}
	if s := c.Status(); s.Breaker != "closed" || s.LastError != "" {
		t.Errorf("Status = %+v, want a closed breaker and no error", s)
	}
}

// TestQueueOverflowDrops checks that Put never blocks: with the writer
// stalled, writes beyond the queue are dropped and counted.
func TestQueueOverflowDrops(t *testing.T) {
	m, url := miniURL(t)
	reg := prometheus.NewRegistry()
	c, err := newCache(Config{URL: url, QueueSize: 4, Timeout: generous}, reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c.Put(testKey(i), []byte("[1]"))
	}
	if n := value(t, c.m.dropped[dropQueueFull]); n != 6 {
		t.Errorf("dropped queue_full = %v, want 6", n)
	}
	if s := c.Status(); s.QueueDepth != 4 || s.QueueSize != 4 || s.Dropped != 6 {
		t.Errorf("Status = %+v, want queue 4 of 4 and 6 dropped", s)
	}
	if families, err := reg.Gather(); err != nil {
		t.Fatal(err)
	} else {
		for _, f := range families {
			if f.GetName() == "sidecar_cache_redis_write_queue" && f.GetMetric()[0].GetGauge().GetValue() != 4 {
				t.Errorf("write queue gauge = %v, want 4", f.GetMetric()[0].GetGauge().GetValue())
			}
		}
	}

	go c.writeLoop()
	defer c.Close()
	flush(t, c)
	if got := len(m.Keys()); got != 4 {
		t.Errorf("Redis holds %d keys, want the 4 queued", got)
	}
}

// TestPutCopiesValue checks the ownership contract: the caller may reuse
// its slice as soon as Put returns.
func TestPutCopiesValue(t *testing.T) {
	_, url := miniURL(t)
	c, _ := newTestCache(t, Config{URL: url, Timeout: generous})
	v := []byte("[0.125]")
	c.Put(testKey(1), v)
	copy(v, "[9.999]")
	flush(t, c)
	if got := c.Get(context.Background(), [][32]byte{testKey(1)})[0]; string(got) != "[0.125]" {
		t.Errorf("Get = %q, want the value as it was at Put", got)
	}
	c.Put(testKey(2), nil)
	if n := value(t, c.m.dropped[dropEmpty]); n != 1 {
		t.Errorf("dropped empty = %v, want 1", n)
	}
}

func TestNilCacheIsOff(t *testing.T) {
	c, err := New(Config{}, prometheus.NewRegistry(), nil)
	if c != nil || err != nil {
		t.Fatalf("New(no URL) = %v, %v; want nil, nil", c, err)
	}
	if got := c.Get(context.Background(), testKeys(3)); len(got) != 3 || got[0] != nil {
		t.Errorf("Get = %q", got)
	}
	c.Put(testKey(1), []byte("[1]"))
	if err := c.Flush(context.Background()); err != nil {
		t.Errorf("Flush = %v", err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping = %v", err)
	}
	if s := c.Status(); s.Mode != ModeOff {
		t.Errorf("Status = %+v, want mode off", s)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{URL: "http://h"}, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "CACHE_REDIS_URL scheme") {
		t.Errorf("New(bad URL) = %v", err)
	}
	_, url := miniURL(t)
	reg := prometheus.NewRegistry()
	newTestCacheOn(t, reg, url)
	if _, err := New(Config{URL: url}, reg, nil); err == nil || !strings.Contains(err.Error(), "sharedcache: metrics") {
		t.Errorf("second New on one registry = %v, want a metrics error", err)
	}
}

func newTestCacheOn(t *testing.T, reg *prometheus.Registry, url string) *Cache {
	t.Helper()
	c, err := New(Config{URL: url}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestMetricsRegistered(t *testing.T) {
	_, url := miniURL(t)
	reg := prometheus.NewRegistry()
	newTestCacheOn(t, reg, url)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, name := range []string{
		"sidecar_cache_redis_requests_total",
		"sidecar_cache_redis_duration_seconds",
		"sidecar_cache_redis_keys_total",
		"sidecar_cache_redis_write_queue",
		"sidecar_cache_redis_write_dropped_total",
		"sidecar_cache_redis_breaker_state",
	} {
		if !got[name] {
			t.Errorf("metric %s not registered (have %v)", name, got)
		}
	}
}

func TestCloseFlushesAndStops(t *testing.T) {
	m, url := miniURL(t)
	ignore := goleak.IgnoreCurrent()
	c, err := New(Config{URL: url, MinIdleConns: 2, Timeout: generous}, prometheus.NewRegistry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Get(context.Background(), testKeys(8))
	for i := range 100 {
		c.Put(testKey(i), vector(i, 4))
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := len(m.Keys()); got != 100 {
		t.Errorf("Redis holds %d keys after Close, want the 100 queued", got)
	}
	goleak.VerifyNone(t, ignore)

	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := c.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
	c.Put(testKey(1), []byte("[1]"))
	if n := value(t, c.m.dropped[dropClosed]); n != 1 {
		t.Errorf("dropped closed = %v, want 1", n)
	}
	if got := c.Get(context.Background(), testKeys(1)); got[0] != nil {
		t.Errorf("Get after Close = %q", got)
	}
}

func TestStatusAndPassword(t *testing.T) {
	m := miniredis.RunT(t)
	m.RequireAuth("s3cret")
	c, _ := newTestCache(t, Config{URL: "redis://:s3cret@" + m.Addr() + "/0", Timeout: generous})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	c.Put(testKey(1), []byte("[1]"))
	flush(t, c)
	if v := c.Get(context.Background(), testKeys(2))[1]; string(v) != "[1]" {
		t.Errorf("Get with a password = %q", v)
	}
	s := c.Status()
	want := Status{Address: "redis://:xxxxx@" + m.Addr() + "/0", Mode: ModeSingle, Namespace: DefaultNamespace, Breaker: "closed", QueueSize: 1024}
	if s != want {
		t.Errorf("Status = %+v\nwant %+v", s, want)
	}
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if wantJSON := `{"address":"redis://:xxxxx@` + m.Addr() + `/0","mode":"single","namespace":"teisc:v1:","breaker":"closed","queue_depth":0,"queue_size":1024,"dropped":0}`; string(j) != wantJSON {
		t.Errorf("Status JSON = %s\nwant %s", j, wantJSON)
	}

	wrong, _ := newTestCache(t, Config{URL: "redis://:wrong-s3cret@" + m.Addr(), Timeout: generous})
	if v := wrong.Get(context.Background(), testKeys(2))[1]; v != nil {
		t.Errorf("Get with a wrong password = %q", v)
	}
	err = wrong.Ping(context.Background())
	if err == nil {
		t.Fatal("Ping with a wrong password = nil")
	}
	for _, out := range []string{err.Error(), wrong.Status().LastError, wrong.Status().Address} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("password shown: %s", out)
		}
	}
}
