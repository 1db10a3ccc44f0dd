package sharedcache

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test closes its caches; none may leave a goroutine behind.
	goleak.VerifyTestMain(m)
}

// testKey is the first-layer key of the i-th test text.
func testKey(i int) [32]byte { return sha256.Sum256([]byte("text " + strconv.Itoa(i))) }

// testKeys returns n distinct keys.
func testKeys(n int) [][32]byte {
	keys := make([][32]byte, n)
	for i := range keys {
		keys[i] = testKey(i)
	}
	return keys
}

// vector returns TEI's JSON for one dim-dimensional embedding, distinct per
// seed: about 12.5 bytes a dimension, 12.8 kB at 1024.
func vector(seed, dim int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := range dim {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%.9f", float64((seed*7919+i*104729)%1000003)/1000003-0.5)
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// testLogger sends the cache's log lines to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newTestCache returns a started cache for cfg on a registry of its own,
// closed when the test ends.
func newTestCache(t testing.TB, cfg Config) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, reg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, reg
}

// value reads a counter or gauge, or a histogram's sample count.
func value(t testing.TB, m any) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	t.Fatalf("metric %v is not a counter, gauge or histogram", m)
	return 0
}

// requests is the count of round trips of o that ended in r.
func requests(t testing.TB, c *Cache, o op, r outcome) float64 {
	t.Helper()
	return value(t, c.m.requests[o][r])
}

// flush waits for the writer to write every Put so far.
func flush(t testing.TB, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// waitFor calls cond every few milliseconds until it holds, failing the
// test after 10s. It waits for background work (a breaker's open period, a
// restarted server), never for a fixed time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tripBreaker calls Get until the breaker opens, failing the test if it
// does not within failures calls. Each call must miss every key.
func tripBreaker(t testing.TB, c *Cache, keys [][32]byte) {
	t.Helper()
	for i := 0; c.Status().Breaker != "open"; i++ {
		if i == c.cfg.BreakerFailures {
			t.Fatalf("breaker still %s after %d failed lookups", c.Status().Breaker, i)
		}
		for j, v := range c.Get(context.Background(), keys) {
			if v != nil {
				t.Fatalf("lookup %d: key %d hit while Redis is down", i, j)
			}
		}
	}
}
