package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the sidecar's Prometheus metrics, on a registry owned by the
// server so that tests (and several servers in one process) stay apart.
// Replica labels are TEI's host:port; a replica's series are deleted when
// it leaves its pool, so their number stays that of the live replicas.
type metrics struct {
	reg *prometheus.Registry

	requests          *prometheus.CounterVec
	requestDuration   *prometheus.HistogramVec
	cacheHits         *prometheus.CounterVec
	cacheMisses       *prometheus.CounterVec
	cacheEvictions    *prometheus.CounterVec
	coalesced         *prometheus.CounterVec
	nonFinite         *prometheus.CounterVec
	upstreamCalls     *prometheus.CounterVec
	upstreamInputs    *prometheus.CounterVec
	upstreamLatency   *prometheus.HistogramVec
	breakerState      *prometheus.GaugeVec
	breakerTransition *prometheus.CounterVec
	replicaState      *prometheus.GaugeVec
	queueInputs       *prometheus.GaugeVec
	inflightInputs    *prometheus.GaugeVec
	concurrencyLimit  *prometheus.GaugeVec
	retries           *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sidecar_request_duration_seconds", Help: "Time to answer a request, by route, face and status.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "face", "status"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_cache_hits_total", Help: "Inputs (embed) or whole answers (rerank) found in a cache layer.",
		}, []string{"cache", "layer"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_cache_misses_total", Help: "Cacheable inputs or answers found in no cache layer.",
		}, []string{"cache"}),
		cacheEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_cache_evictions_total", Help: "Entries evicted to stay within the entry or byte limit.",
		}, []string{"cache"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_coalesced_inputs_total", Help: "Missed inputs (or reranks) served by another request's identical work in flight.",
		}, []string{"pool"}),
		nonFinite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_nonfinite_embeddings_total", Help: "Embeddings TEI answered with NaN or infinite values (null): refused, never cached.",
		}, []string{"pool"}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_upstream_calls_total", Help: "Calls to TEI by pool, replica, route and outcome.",
		}, []string{"pool", "replica", "route", "outcome"}),
		upstreamInputs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_upstream_inputs_total", Help: "Inputs sent to TEI by pool and replica.",
		}, []string{"pool", "replica"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sidecar_upstream_duration_seconds", Help: "Latency of calls to TEI by pool, replica and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"pool", "replica", "outcome"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_breaker_state", Help: "Circuit breaker state by replica: 0 closed, 1 half-open, 2 open.",
		}, []string{"pool", "replica"}),
		breakerTransition: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_breaker_transitions_total", Help: "Circuit breaker state changes by replica.",
		}, []string{"pool", "replica", "from", "to"}),
		replicaState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_replica_state", Help: "1 for the state each replica is in (starting, ready, down, draining, refused), 0 for the others.",
		}, []string{"pool", "replica", "state"}),
		queueInputs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_queue_inputs", Help: "Inputs waiting in the sidecar's scheduler by pool and priority.",
		}, []string{"pool", "priority"}),
		inflightInputs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_inflight_inputs", Help: "Inputs in flight to TEI by pool and replica.",
		}, []string{"pool", "replica"}),
		concurrencyLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_concurrency_limit", Help: "Most inputs the sidecar keeps in flight to each replica: the adaptive limit, or TEI's max_concurrent_requests.",
		}, []string{"pool", "replica"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_upstream_retries_total", Help: "Work sent to TEI again, by pool and why: split (a batch refused for one input), smaller (over the payload limit), backpressure (429), elsewhere (the replica failed).",
		}, []string{"pool", "reason"}),
	}
	m.reg.MustRegister(m.requests, m.requestDuration, m.cacheHits, m.cacheMisses, m.cacheEvictions, m.coalesced, m.nonFinite,
		m.upstreamCalls, m.upstreamInputs, m.upstreamLatency, m.breakerState, m.breakerTransition,
		m.replicaState, m.queueInputs, m.inflightInputs, m.concurrencyLimit, m.retries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerCache exposes a cache's size as gauges read at scrape time.
func (m *metrics) registerCache(name string, stats func() (int, int64)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sidecar_cache_entries", Help: "Entries in the cache.", ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { n, _ := stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sidecar_cache_bytes", Help: "Bytes held by the cache, as charged against its budget.", ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { _, b := stats(); return float64(b) }),
	)
}

// forgetReplica deletes every series of a replica that left its pool.
func (m *metrics) forgetReplica(pool, addr string) {
	l := prometheus.Labels{"pool": pool, "replica": addr}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.upstreamCalls, m.upstreamInputs, m.upstreamLatency, m.breakerState, m.breakerTransition, m.replicaState, m.inflightInputs, m.concurrencyLimit} {
		v.DeletePartialMatch(l)
	}
}
