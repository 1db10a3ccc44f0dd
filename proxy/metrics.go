package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the sidecar's Prometheus metrics, on a registry owned by the
// server so that tests (and several servers in one process) stay apart.
type metrics struct {
	reg *prometheus.Registry

	requests          *prometheus.CounterVec
	cacheHits         prometheus.Counter
	cacheMisses       prometheus.Counter
	cacheEvictions    prometheus.Counter
	coalesced         prometheus.Counter
	upstreamCalls     *prometheus.CounterVec
	upstreamInputs    *prometheus.CounterVec
	upstreamLatency   *prometheus.HistogramVec
	breakerState      *prometheus.GaugeVec
	breakerTransition *prometheus.CounterVec
	queueDepth        *prometheus.GaugeVec
	inflightInputs    *prometheus.GaugeVec
	retries           *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_cache_hits_total", Help: "Inputs answered from the cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_cache_misses_total", Help: "Cacheable inputs not found in the cache.",
		}),
		cacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_cache_evictions_total", Help: "Entries evicted to stay within the entry or byte limit.",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_coalesced_inputs_total", Help: "Missed inputs served by another request's identical call in flight.",
		}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_upstream_calls_total", Help: "Calls to TEI by upstream, route and outcome.",
		}, []string{"upstream", "route", "outcome"}),
		upstreamInputs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_upstream_inputs_total", Help: "Inputs sent to TEI by upstream.",
		}, []string{"upstream"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sidecar_upstream_duration_seconds", Help: "Latency of calls to TEI by upstream and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"upstream", "outcome"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_breaker_state", Help: "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open.",
		}, []string{"upstream"}),
		breakerTransition: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_breaker_transitions_total", Help: "Circuit breaker state changes.",
		}, []string{"upstream", "from", "to"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_admission_queue_inputs", Help: "Inputs waiting for an upstream permit.",
		}, []string{"upstream"}),
		inflightInputs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_inflight_inputs", Help: "Inputs in flight to TEI by upstream.",
		}, []string{"upstream"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_upstream_retries_total", Help: "Calls to TEI retried after back-pressure or an unreachable server.",
		}, []string{"upstream"}),
	}
	m.reg.MustRegister(m.requests, m.cacheHits, m.cacheMisses, m.cacheEvictions, m.coalesced,
		m.upstreamCalls, m.upstreamInputs, m.upstreamLatency, m.breakerState, m.breakerTransition,
		m.queueDepth, m.inflightInputs, m.retries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerCache exposes the cache's size as gauges read at scrape time.
func (m *metrics) registerCache(name string, stats func() (int, int64)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sidecar_cache_entries", Help: "Entries in the cache.", ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { n, _ := stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sidecar_cache_bytes", Help: "Approximate bytes held by the cache.", ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { _, b := stats(); return float64(b) }),
	)
}
