package proxy

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/redistest"
)

// sharedBenchServer is a proxy in front of the canned 1024-d TEI with no
// memory cache, so every lookup goes to the Redis at redisURL.
func sharedBenchServer(b *testing.B, teiURL, redisURL string, edit func(*Config)) *Server {
	b.Helper()
	cfg := DefaultConfig()
	cfg.EmbedURLs = []string{teiURL}
	cfg.CacheSize = 0
	cfg.Shared.URL = redisURL
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv
}

// reportPercentiles reports the p50 and p99 of the samples.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSharedHit32 is a full second-layer hit of 32 × 1024-d inputs
// through the handler, end to end: one Redis round trip on loopback (the
// target is a p50 of at most 1 ms).
func BenchmarkSharedHit32(b *testing.B) {
	redis := redistest.Start(b)
	url, _ := cannedTEI(b)
	srv := sharedBenchServer(b, url, redis.URL(), nil)
	h := srv.Handler()
	body := batchBody("shared", 32)
	serveOnce(b, h, body)
	if err := srv.shared.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	var samples []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		serveOnce(b, h, body)
		samples = append(samples, time.Since(start))
	}
	if n := metricWith(b, srv, "sidecar_cache_hits_total", "layer", "redis"); n < 32 {
		b.Fatalf("%v second-layer hits: the benchmark did not hit Redis", n)
	}
	reportPercentiles(b, samples)
}

// BenchmarkSharedRedisStalled measures a request of one input while Redis
// is stalled (SIGSTOP): first with the breaker closed (each lookup waits
// out CACHE_REDIS_TIMEOUT, the target being at most that plus 10 ms), then
// with it open (the target being at most 1 ms added). TEI is the canned
// one, so the rest of the request costs next to nothing.
func BenchmarkSharedRedisStalled(b *testing.B) {
	const timeout = 20 * time.Millisecond
	for _, tc := range []struct {
		name     string
		failures int
	}{{"breaker-closed", 1 << 30}, {"breaker-open", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			redis := redistest.Start(b)
			url, _ := cannedTEI(b)
			srv := sharedBenchServer(b, url, redis.URL(), func(c *Config) {
				c.Shared.Timeout = timeout
				c.Shared.BreakerFailures = tc.failures
				c.Shared.BreakerOpenFor = time.Hour
			})
			h := srv.Handler()
			serveOnce(b, h, `{"inputs":"warm"}`)
			redis.Pause()
			defer redis.Resume()
			serveOnce(b, h, `{"inputs":"opens the breaker, when it may"}`)
			var samples []time.Duration
			for b.Loop() {
				body := batchBody("stalled "+time.Now().String(), 1)
				start := time.Now()
				serveOnce(b, h, body)
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}
