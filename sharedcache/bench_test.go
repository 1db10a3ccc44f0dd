package sharedcache

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/tei-sidecar/tei-sidecar/tests/redistest"
)

// reportLatency adds the median and 99th percentile of one call to the
// benchmark's results.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkGet32x1024 is a full second-layer hit of a 32-text batch of
// 1024-dimensional embeddings (about 12.8 kB of JSON each, 410 kB in all)
// from a real redis-server on loopback: one pipelined round trip.
func BenchmarkGet32x1024(b *testing.B) {
	s := redistest.Start(b)
	c, _ := newTestCache(b, Config{URL: s.URL(), Timeout: generous})
	keys := testKeys(32)
	putAll(b, c, keys, 1024)
	checkHits(b, c, keys, 1024)
	b.SetBytes(int64(32 * len(vector(0, 1024))))
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		got := c.Get(ctx, keys)
		lat = append(lat, time.Since(start))
		if got[31] == nil {
			b.Fatal("miss")
		}
	}
	if n := requests(b, c, opGet, outcomeTimeout) + requests(b, c, opGet, outcomeError); n != 0 {
		b.Fatalf("%v lookups failed", n)
	}
	reportLatency(b, lat)
}

// BenchmarkGetBreakerOpen is a 32-key lookup while Redis is down and the
// breaker open: the cost a request pays for the second layer then.
func BenchmarkGetBreakerOpen(b *testing.B) {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		b.Fatal(err)
	}
	c, _ := newTestCache(b, Config{URL: "redis://" + m.Addr(), BreakerFailures: 1, BreakerOpenFor: time.Hour})
	m.Close()
	keys := testKeys(32)
	tripBreaker(b, c, keys)
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		c.Get(ctx, keys)
		lat = append(lat, time.Since(start))
	}
	if got := c.Status().Breaker; got != "open" {
		b.Fatalf("breaker = %s", got)
	}
	reportLatency(b, lat)
}
