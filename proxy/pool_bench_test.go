package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// BenchmarkPick measures choosing a replica for one chunk in a pool of 64
// ready replicas (the target is at most 1 µs).
func BenchmarkPick(b *testing.B) {
	cfg := DefaultConfig()
	cfg.EmbedURLs = []string{"http://127.0.0.1:1"}
	s := &Server{cfg: cfg.withDefaults(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics()}
	p := newPool(s, "embed")
	for i := range 64 {
		raw := fmt.Sprintf("http://10.0.0.%d:80", i)
		c, _ := tei.NewClient(raw)
		r := newReplica(p, raw, raw, c)
		r.state, r.limit, r.maxBatch, r.inflight = stateReady, 512, 32, i%7*8
		p.replicas = append(p.replicas, r)
	}
	b.ResetTimer()
	for b.Loop() {
		r, done := p.pickLocked(1, bulk, nil)
		done(nil)
		_ = r
	}
}

// BenchmarkReplicaScaling drives the same sidecar in front of one, then
// three simulated TEIs, each with one backend worker, a fixed batch cost
// and at most 8 inputs a batch, so each replica's throughput is bounded by
// its batches, not by this machine's CPUs. It reports inputs per second,
// the scaling ratio (ideal 3) and the spread of inputs across the three
// replicas (the largest deviation from an even share).
func BenchmarkReplicaScaling(b *testing.B) {
	const (
		clients  = 48
		duration = 3 * time.Second
	)
	args := []string{"--model-id", "BAAI/bge-small-en-v1.5", "--sim-workers", "1", "--max-batch-requests", "8",
		"--sim-batch-cost", "20ms", "--sim-token-cost", "0s"}
	var single float64
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			rs := startReplicas(b, n, args...)
			cfg := DefaultConfig()
			cfg.EmbedURLs = rs.urls
			cfg.CacheSize = 0
			srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			if err := srv.Connect(b.Context()); err != nil {
				b.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // every replica probed
			var done atomic.Int64
			for b.Loop() {
				done.Store(0)
				stop := time.Now().Add(duration)
				var wg sync.WaitGroup
				for w := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; time.Now().Before(stop); i++ {
							resp, err := http.Post(hs.URL+"/embed", "application/json",
								strings.NewReader(fmt.Sprintf(`{"inputs":"client %d text %d"}`, w, i)))
							if err != nil {
								return
							}
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode == 200 {
								done.Add(1)
							}
						}
					}()
				}
				wg.Wait()
			}
			rate := float64(done.Load()) / duration.Seconds()
			b.ReportMetric(rate, "inputs/s")
			if n == 1 {
				single = rate
				return
			}
			if single > 0 {
				b.ReportMetric(rate/single, "scaling")
			}
			got := make([]float64, n)
			total := 0.0
			for i, u := range rs.urls {
				got[i] = metricWith(b, srv, "sidecar_upstream_inputs_total", "replica", strings.TrimPrefix(u, "http://"))
				total += got[i]
			}
			worst := 0.0
			for _, g := range got {
				worst = math.Max(worst, math.Abs(g/(total/float64(n))-1))
			}
			b.ReportMetric(100*worst, "%spread")
		})
	}
}
